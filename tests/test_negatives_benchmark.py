"""benchmarks/negatives.py on a tiny Toys-format file: each loss trains, the table pairs seeds with the full softmax."""

import json

from keras_fame.data import write_sequences
from keras_fame.data.synthetic import planted_facets


def test_each_loss_runs_and_the_table_reports_the_ratio(load_script, tmp_path):
    bench = load_script("benchmarks/negatives.py")
    (tmp_path / "toys").mkdir()
    write_sequences(str(tmp_path / "toys" / "Toys_and_Games.txt"), planted_facets(num_users=120, seed=0)[0])
    out = tmp_path / "out"
    out.mkdir()
    for loss in ("full", "mixed256"):
        row = json.loads(open(bench.run(loss, 0, 1, str(tmp_path), str(out), str(tmp_path / "checkpoints"))).read())
        assert row["loss"] == loss and len(row["validation_ndcg@10"]) == 1 and row["git"]
    assert bench.run("full", 0, 1, str(tmp_path), str(out)).endswith("full-seed0.json")  # skipped, not rerun
    md = bench.table(str(out))
    full = json.loads((out / "full-seed0.json").read_text())["best_validation_ndcg@10"]
    mixed = json.loads((out / "mixed256-seed0.json").read_text())["best_validation_ndcg@10"]
    seconds = json.loads((out / "mixed256-seed0.json").read_text())["seconds_per_epoch"][0]
    assert f"| mixed256 | 0 | {mixed:.4f} (1 seed) | {mixed / full:.3f} | {seconds:.0f} |" in md
