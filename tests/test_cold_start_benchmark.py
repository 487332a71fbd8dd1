"""benchmarks/cold_start.py on small planted data: both evaluations of a content variant, and the summary."""

import json

import numpy as np

from keras_fame.data import leave_one_out
from keras_fame.data.cold_start import hold_out_items, remove_items
from keras_fame.data.synthetic import planted_facets


def test_a_content_variant_is_evaluated_with_and_without_neighbour_offsets(load_script, monkeypatch, tmp_path):
    bench = load_script("benchmarks/cold_start.py")
    data, _ = planted_facets(num_users=60, max_length=8, seed=2)
    hidden = hold_out_items(data.num_items, 0.2, seed=0)
    split = leave_one_out(remove_items(data, hidden), max_len=8)
    table = np.random.default_rng(0).normal(scale=0.02, size=(data.num_items + 1, 64)).astype("float32")
    # The text table stands in for the MiniLM/pre-trainer one (the text path has its own tests).
    monkeypatch.setattr(bench, "text_item_table", lambda *a, **k: (table.copy(), {"stand_in": True}))

    result = bench.run_variant("pca_frozen", split, hidden, "unused", seed=0, epochs=2, patience=2, verbose=0, neighbours=3)
    assert result["held_out_rows_unchanged"]
    assert result["neighbour_offsets"]["neighbours"] == 3
    for evaluation in (result["test"], result["test_neighbour_offsets"]):
        assert set(evaluation) >= {"cold", "warm", "all", "cold_among_held_out", "cold_diagnostics"}
    # Warm users' lists can change only through the held-out items' new rows; the cold targets' scores moved.
    before = result["test"]["cold_diagnostics"]["mean_score_held_out_items"]
    after = result["test_neighbour_offsets"]["cold_diagnostics"]["mean_score_held_out_items"]
    assert before != after
    no_content = bench.run_variant("id_only", split, hidden, "unused", seed=0, epochs=1, patience=1, verbose=0)
    assert "test_neighbour_offsets" not in no_content
    # Facet inputs: a held-out item's row is its labels' embeddings (learnt through other items) plus its
    # untrained ID row; the facet variant is the text variant with the labels fused in.
    labels = [np.arange(data.num_items + 1) % 3, np.arange(data.num_items + 1) % 5]
    with_facets = bench.run_variant("facets_id_only", split, hidden, "unused", seed=0, epochs=1, patience=1, verbose=0,
                                    item_facets=labels)
    assert with_facets["held_out_rows_unchanged"] is False  # the shared label embeddings trained
    assert with_facets["test"]["all"]["ndcg@10"] != no_content["test"]["all"]["ndcg@10"]

    out = tmp_path / "out"
    out.mkdir()
    result.update(dataset="toys", seed=0, variant="pca_frozen", fraction=0.2, held_out_items=len(hidden),
                  cold_users=1, warm_users=1)
    (out / "toys-seed0-pca_frozen.json").write_text(json.dumps(result))
    table_md = bench.summary(str(out))
    assert "| toys | 0 | pca_frozen |" in table_md
    assert "| toys | 0 | pca_frozen, held-out offsets from 3 text neighbours |" in table_md
