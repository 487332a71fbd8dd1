"""`benchmarks/gate_headroom.py`: a finished run's validation users, re-ranked, and RESULTS.md's section on it."""

import json

from keras_fame.data import write_sequences
from keras_fame.data.synthetic import planted_facets


def test_a_finished_run_is_diagnosed_on_the_users_its_run_validated_on(tmp_path, load_script, capsys):
    from keras_fame.experiments import run_pipeline

    headroom = load_script("benchmarks/gate_headroom.py")
    data, _ = planted_facets(num_users=120, max_length=10, seed=0)
    (tmp_path / "toys").mkdir()
    write_sequences(str(tmp_path / "toys" / "Toys_and_Games.txt"), data)
    run = tmp_path / "run"
    run_pipeline(str(tmp_path / "toys" / "Toys_and_Games.txt"), "toys", str(run), hidden_dim=8, num_heads=2,
                 num_experts=2, max_len=10, epochs=1, fame_epochs=2, verbose=0)
    out = tmp_path / "headroom.json"
    assert headroom.main(["--runs", str(run), "--data-dir", str(tmp_path), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert "commit" in report["git"] and report["command"].startswith("python gate_headroom.py")
    assert (row["dataset"], row["heads"], row["users"]) == ("toys", 2, 120)
    # The same users, split and model as the run: its recorded validation NDCG@10 comes back.
    assert abs(row["gated"]["ndcg@10"] - row["recorded_validation_ndcg@10"]) < 1e-9
    assert row["oracle_head"]["ndcg@10"] >= max(m["ndcg@10"] for m in row["head_metrics"])
    assert 0.0 <= row["head_top10_overlap"] <= 1.0

    report["rows"].append({**row, "seed": 1})
    results = tmp_path / "results"
    results.mkdir()
    (results / "gate_headroom.json").write_text(json.dumps(report))
    report_script = load_script("benchmarks/results_report.py")
    report_script.ROOT = str(tmp_path)
    section = report_script.gate_headroom_section()
    line = next(s for s in section.splitlines() if s.startswith("| toys |"))
    assert "| `run` | 0, 1 |" in line and f"{row['gated']['ndcg@10']:.4f} ± 0.0000" in line
    assert f"| {row['gated']['ndcg@10'] - row['uniform']['ndcg@10']:+.4f} ± 0.0000 |" in line

    capsys.readouterr()
    assert headroom.main(["--runs", str(tmp_path), "--out", str(out)]) == 2
    assert "no fame.keras" in capsys.readouterr().err
    assert headroom.main(["--runs", str(run), "--data-dir", str(run), "--out", str(out)]) == 2
    assert "the toys sequence file is not found (in --data-dir" in capsys.readouterr().err
    other, _ = planted_facets(num_users=90, max_length=10, seed=5)
    (tmp_path / "other" / "toys").mkdir(parents=True)
    write_sequences(str(tmp_path / "other" / "toys" / "Toys_and_Games.txt"), other)
    assert headroom.main(["--runs", str(run), "--data-dir", str(tmp_path / "other"), "--out", str(out)]) == 2
    assert "is not the data" in capsys.readouterr().err
