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


def test_a_killed_epochs_run_continues_from_its_last_finished_epoch(tmp_path, load_script, monkeypatch):
    bench = load_script("benchmarks/million_items.py")
    import keras

    argv = ["--users", "1500", "--items", "200", "--data", "clustered", "--cluster-size", "10", "--stay", "0.95",
            "--model", "sasrec", "--epochs", "3", "--patience", "3", "--eval-users", "300", "--chunk-size", "64",
            "--batch-size", "128", "--negatives", "16", "--checkpoint-dir", str(tmp_path / "ckpt")]

    class Kill(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt("killed in epoch 3")

    fit = bench.fit_with_early_stopping
    monkeypatch.setattr(bench, "fit_with_early_stopping",
                        lambda *a, **k: fit(*a, **{**k, "callbacks": [*k["callbacks"], Kill()]}))
    try:
        bench.main([*argv, "--out", str(tmp_path / "killed.json")])
    except KeyboardInterrupt:
        pass
    assert (tmp_path / "ckpt" / "latest").is_file()
    monkeypatch.setattr(bench, "fit_with_early_stopping", fit)
    out = tmp_path / "resumed.json"
    assert bench.main([*argv, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["stages"]["train"]["resumed_from_epoch"] == 2
    # The two epochs before the kill keep their records, loss and memory included, and the third follows.
    assert [e["epoch"] for e in report["epochs"]] == [1, 2, 3]
    assert all(e["loss"] > 0 and e["peak_rss_gb"] > 0 and e["train_seconds"] > 0 for e in report["epochs"])
    assert not (tmp_path / "ckpt").exists()  # removed when training ends


def test_fame_starts_from_a_saved_sasrec_and_bad_flags_are_refused(tmp_path, load_script, monkeypatch, capsys):
    bench = load_script("benchmarks/million_items.py")
    import keras
    import numpy as np
    import pytest

    common = ["--users", "1500", "--items", "200", "--data", "clustered", "--cluster-size", "10", "--stay", "0.95",
              "--epochs", "1", "--patience", "1", "--eval-users", "300", "--chunk-size", "64", "--batch-size", "128",
              "--negatives", "16"]
    saved = tmp_path / "sasrec.keras"
    saved_run = ["--model", "sasrec", "--save-model", str(saved), "--out", str(tmp_path / "s.json")]
    assert bench.main([*common, *saved_run]) == 0
    sasrec_report = json.loads((tmp_path / "s.json").read_text())
    sasrec_table = np.asarray(keras.saving.load_model(str(saved)).item_embedding.item_table())

    started = {}
    train = bench.train_epochs

    def record_start(model, *args, **kwargs):
        started["table"] = np.asarray(model.item_embedding.item_table())
        started["class"] = type(model).__name__
        return train(model, *args, **kwargs)

    monkeypatch.setattr(bench, "train_epochs", record_start)
    out = tmp_path / "fame.json"
    assert bench.main([*common, "--model", "fame", "--from-sasrec", str(saved), "--out", str(out)]) == 0
    assert started["class"] == "FAME"
    np.testing.assert_array_equal(started["table"], sasrec_table)  # the transplant, not a random start
    report = json.loads(out.read_text())
    assert report["settings"]["from_sasrec"] == str(saved)
    # The saved SASRec, evaluated before the transplant, ranks the same users as its own run did: the pairing holds.
    assert report["stages"]["start_model"]["ndcg_at_10"] == sasrec_report["stages"]["evaluate"]["ndcg_at_10"]
    assert report["stages"]["start_model"]["hr_at_10"] == sasrec_report["stages"]["evaluate"]["hr_at_10"]
    paired = report["paired_ndcg_at_10"]
    assert set(paired) == {"popularity", "start_model"} and set(sasrec_report["paired_ndcg_at_10"]) == {"popularity"}
    evaluate = report["stages"]["evaluate"]
    for baseline, value in (("popularity", evaluate["popularity_ndcg_at_10"]),
                            ("start_model", report["stages"]["start_model"]["ndcg_at_10"])):
        assert paired[baseline]["users"] == evaluate["users"] == 300
        # The mean paired difference is the difference of the two means (rounded to 4 places in the stages).
        assert paired[baseline]["mean_difference"] == pytest.approx(evaluate["ndcg_at_10"] - value, abs=1.1e-4)

    for flags, message in ((["--model", "sasrec", "--from-sasrec", str(saved)], "--from-sasrec needs --model fame"),
                           (["--model", "fame", "--from-sasrec", str(tmp_path / "none.keras")], "no such file"),
                           (["--model", "sasrec", "--save-model", str(tmp_path / "x.h5")], "must name a .keras file")):
        capsys.readouterr()
        with pytest.raises(SystemExit):
            bench.main([*common, *flags])
        assert message in capsys.readouterr().err
    # A SASRec over another catalogue: refused, naming the flag and both sizes.
    with pytest.raises(SystemExit, match=r"--from-sasrec .*not a SASRec over --items 150 items .*200 items"):
        bench.main([*[c if c != "200" else "150" for c in common], "--model", "fame", "--from-sasrec", str(saved)])


def test_paired_ndcg_equals_a_hand_computation(load_script):
    import numpy as np
    import pytest
    from scipy import stats

    bench = load_script("benchmarks/million_items.py")
    a, b = np.array([0, 5, 20, 3, 9]), np.array([1, 5, 2, 30, 0])
    # NDCG@10 per user: 1 / log2(rank + 2) inside the top 10, 0 outside.
    diff = np.array([1 / np.log2(3) - 1, 0.0, 1 / np.log2(4) - 0, 0 - 1 / np.log2(5), 1 - 1 / np.log2(11)])
    got = bench.paired_ndcg(a, b)
    se = diff.std(ddof=1) / np.sqrt(5)
    assert got["users"] == 5 and got["users_b_better"] == 2 and got["users_a_better"] == 2
    assert got["mean_difference"] == pytest.approx(diff.mean()) and got["standard_error"] == pytest.approx(se)
    assert got["ci95"] == pytest.approx([diff.mean() - 1.96 * se, diff.mean() + 1.96 * se])
    assert got["p_two_sided"] == pytest.approx(2 * stats.norm.sf(abs(diff.mean() / se)))
    # Swapping the two rankers flips the sign and nothing else.
    swapped = bench.paired_ndcg(b, a)
    assert swapped["mean_difference"] == pytest.approx(-diff.mean()) and swapped["p_two_sided"] == got["p_two_sided"]
    assert bench.paired_ndcg(a, a)["p_two_sided"] == 1.0
    with pytest.raises(ValueError, match="same users"):
        bench.paired_ndcg(a, b[:4])
