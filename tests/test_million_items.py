"""benchmarks/million_items.py end to end on a small clustered catalogue."""

import json


def test_clustered_catalogue_is_learnt_with_epochs_and_early_stopping(tmp_path, load_script):
    bench = load_script("benchmarks/million_items.py")
    out = tmp_path / "report.json"
    assert bench.main(["--users", "3000", "--items", "300", "--data", "clustered", "--cluster-size", "10",
                       "--stay", "0.95", "--model", "fame", "--epochs", "3", "--patience", "1", "--eval-users", "500",
                       "--chunk-size", "128", "--batch-size", "128", "--negatives", "32", "--optimizer", "lazy_adam",
                       "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    epochs = report["epochs"]
    assert 1 <= len(epochs) <= 3 and all(e["train_seconds"] > 0 and e["peak_rss_gb"] > 0 for e in epochs)
    best = max(e["val_ndcg@10"] for e in epochs)
    assert report["stages"]["train"]["best_val_ndcg_at_10"] == best
    # The clusters are learnt: far above item popularity (which knows nothing of the user's cluster).
    evaluate = report["stages"]["evaluate"]
    assert evaluate["ndcg_at_10"] > 2 * evaluate["popularity_ndcg_at_10"], evaluate
    assert report["stages"]["export"]["served_equals_recommend"]
