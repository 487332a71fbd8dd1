"""The `keras-fame` command end to end on small data the test writes itself."""

import json

import pytest

from keras_fame import console
from keras_fame.data import write_sequences
from keras_fame.data.synthetic import planted_facets


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("console")
    data, _ = planted_facets(num_users=120, max_length=10, seed=0)
    seq = root / "mine.txt"
    write_sequences(str(seq), data)
    out = root / "run"
    code = console.main(["train", "mine", "--sequence-file", str(seq), "--output-dir", str(out), "--hidden-dim", "8",
                         "--heads", "2", "--experts", "2", "--max-len", "10", "--epochs", "1", "--fame-epochs", "1",
                         "--verbose", "0"])
    assert code in (0, None)
    return root, seq, out, data


def test_train_evaluate_recommend_export(trained, capsys):
    root, seq, out, data = trained
    assert (out / "fame.keras").is_file() and (out / "results.json").is_file()
    capsys.readouterr()

    assert console.main(["evaluate", str(out / "fame.keras"), str(seq)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["test"] == json.loads((out / "results.json").read_text())["fame"]["test"]

    assert console.main(["recommend", str(out / "fame.keras"), "--history", "1", "2", "3", "--history", "4",
                         "--k", "5", "--explain"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert len(answer["item_ids"]) == 2 and len(answer["item_ids"][0]) == 5
    assert not {1, 2, 3} & set(answer["item_ids"][0])
    assert len(answer["head_item_ids"][0]) == 2  # one top-k per head

    assert console.main(["export", str(out / "fame.keras"), str(root / "serving")]) == 0
    assert (root / "serving" / "1" / "saved_model.pb").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "missing.keras", "missing.txt"], "no such sequence file"),
        (["recommend", "missing.keras", "--history", "1"], "no such model file"),
        (["train"], "usage: keras-fame train DATASET"),
        (["train", "netflix"], "unknown dataset 'netflix'"),
        (["train", "mine", "--sequence-file", "nope.txt"], "--sequence-file nope.txt: no such file"),
        (["prepare", "toys", "--raw", "nope.json.gz"], "--raw nope.json.gz: no such file"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    assert console.main(argv) == 2
    assert message in capsys.readouterr().err


def test_recommend_refuses_unknown_items(trained, capsys):
    _, _, out, data = trained
    assert console.main(["recommend", str(out / "fame.keras"), "--history", str(data.num_items + 5)]) == 2
    assert "error" in capsys.readouterr().err


def test_help_reads_well(capsys):
    with pytest.raises(SystemExit) as exit_info:
        console.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for command in ("prepare", "train", "evaluate", "recommend", "export"):
        assert command in text


def test_a_csv_log_with_string_ids_round_trips_through_train_recommend_and_export(tmp_path, capsys):
    import numpy as np

    from keras_fame.data.preprocess import load_item_ids

    data, _ = planted_facets(num_users=100, max_length=10, seed=3)
    rows = []
    for u in range(data.num_users):
        for t, item in enumerate(data.items[data.indptr[u]:data.indptr[u + 1]]):
            rows.append(f"cust-{u},SKU {item:04d}-x,{1000 + 10 * t}")
    log = tmp_path / "log.csv"
    log.write_text("user,item,timestamp\n" + "\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert console.main(["train", "shop", "--interactions-csv", str(log), "--output-dir", str(out), "--k-core", "1",
                         "--hidden-dim", "8", "--heads", "2", "--experts", "2", "--max-len", "10", "--epochs", "1",
                         "--fame-epochs", "1", "--verbose", "0"]) == 0
    to_original, to_internal = load_item_ids(out / "item_ids.json")
    used = len(np.unique(data.items))  # items that occur in the log
    assert len(to_original) == used and all(v.startswith("SKU ") for v in to_original.values())
    capsys.readouterr()

    history = ["SKU 0003-x", "SKU 0010-x"]
    assert console.main(["recommend", str(out / "fame.keras"), "--history", *history, "--k", "4", "--explain"]) == 0
    answer = json.loads(capsys.readouterr().out)
    top = answer["item_ids"][0]
    assert len(top) == 4 and all(item in to_internal for item in top) and not set(top) & set(history)
    # The same answer as the model in internal ids.
    import keras

    model = keras.saving.load_model(str(out / "fame.keras"))
    internal = model.recommend([[to_internal[h] for h in history]], k=4)["item_ids"][0]
    assert top == [to_original[int(i)] for i in internal]
    assert all(item in to_internal for head in answer["head_item_ids"][0] for item in head)

    assert console.main(["recommend", str(out / "fame.keras"), "--history", "no-such-sku"]) == 2
    assert "'no-such-sku' is not in" in capsys.readouterr().err

    assert console.main(["export", str(out / "fame.keras"), str(tmp_path / "serving")]) == 0
    exported = tmp_path / "serving" / "1"
    assert (exported / "saved_model.pb").is_file()
    assert json.loads((exported / "assets.extra" / "item_ids.json").read_text()) == json.loads((out / "item_ids.json").read_text())
    assert np.array_equal(sorted(to_internal.values()), np.arange(1, used + 1))
    # The SavedModel speaks the user's ids itself: the string signature gives `recommend`'s answer.
    import tensorflow as tf

    serve = tf.saved_model.load(str(exported)).signatures["serving_strings"]
    served = serve(item_ids=tf.constant([history + ["no-such-sku"]]))
    assert [b.decode() for b in served["item_ids"].numpy()[0][:4]] == top
    assert served["unknown_items"].numpy().tolist() == [1]


def test_a_bad_csv_row_is_reported_with_its_line(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text("user,item,timestamp\nu1,a,1\nu1,b,2\nu1,c,soon\n")
    assert console.main(["train", "shop", "--interactions-csv", str(log), "--output-dir", str(tmp_path / "o")]) == 2
    assert f"{log}:4: 'timestamp' is not a number: 'soon'" in capsys.readouterr().err
