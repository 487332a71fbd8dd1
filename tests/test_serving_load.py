"""benchmarks/serving_load.py on a small saved model: sizes from the model, both signatures, errors counted."""

import json

import keras

from keras_fame import FAME


def test_serving_load_reads_the_model_and_drives_both_signatures(load_script, tmp_path):
    bench = load_script("benchmarks/serving_load.py")
    keras.utils.set_random_seed(0)
    model = FAME(37, hidden_dim=8, num_heads=2, num_experts=2, max_len=7)
    model.save(tmp_path / "m.keras")
    (tmp_path / "ids.json").write_text(json.dumps({str(i): f"sku-{i}" for i in range(1, 38)}))
    out = tmp_path / "report.json"
    code = bench.main([str(tmp_path / "m.keras"), "--item-ids", str(tmp_path / "ids.json"), "--threads", "2",
                       "--requests", "5", "--batches", "1", "3", "--rounds", "1", "--k", "4",
                       "--out", str(out)])
    report = json.loads(out.read_text())
    assert code == 0
    assert (report["num_items"], report["max_len"]) == (37, 7)  # the model's, not Toys'
    for signature in ("serving_default", "serving_strings"):
        for batch in (1, 3):
            row = report[f"round_1_{signature}_batch_{batch}"]
            assert row["requests"] == 10 and row["errors"] == 0, row
    assert report["git"] is None or len(report["git"]["commit"]) == 40
    assert "command" in report and "packages" in report


def test_check_counts_an_unknown_id_that_was_not_reported(load_script):
    import numpy as np
    import tensorflow as tf

    bench = load_script("benchmarks/serving_load.py")
    names = np.array(["", "a", "b", "c", "d"], dtype=object)
    ids = np.array([[0, 1], [0, 2]], np.int32)
    answer = {"item_ids": tf.constant([[b"c", b"d"], [b"c", b"d"]]), "unknown_items": tf.constant([0, 0])}
    assert bench.check(ids, answer, 2, names) == ["unknown_items [0, 0], expected 1 then 0s"]
    answer["unknown_items"] = tf.constant([1, 0])
    assert bench.check(ids, answer, 2, names) == []
    answer["item_ids"] = tf.constant([[b"a", b"d"], [b"c", b"d"]])
    assert bench.check(ids, answer, 2, names) == ["an item of the request's history in the top-k"]
