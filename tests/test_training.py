"""The flagship pipeline end to end on small data the test writes itself."""

import json
import os

import keras
import numpy as np
import pytest

from keras_fame import cli
from keras_fame.data import write_sequences
from keras_fame.data.synthetic import planted_facets


def test_train_script_runs_both_stages_and_writes_results(tmp_path, capsys):
    data, _ = planted_facets(num_users=200, max_length=12, seed=0)
    os.makedirs(tmp_path / "toys")
    write_sequences(str(tmp_path / "toys" / "Toys_and_Games.txt"), data)
    out = tmp_path / "run"
    argv = ["--data-dir", str(tmp_path), "--output-dir", str(out), "--hidden-dim", "8", "--heads", "2",
            "--experts", "2", "--max-len", "12", "--epochs", "2", "--fame-epochs", "2", "--verbose", "0"]
    assert cli.main("toys", argv) == 0
    printed = capsys.readouterr().out
    assert "paper FAME (Table 2)" in printed and "0.0681" in printed
    results = json.loads((out / "results.json").read_text())
    for stage in ("sasrec", "fame"):
        assert results[stage]["training"]["epochs_run"] == 2
        for protocol in ("exclude_history", "all_items"):
            assert results[stage]["test"][protocol]["protocol"] == protocol
            assert 0 <= results[stage]["test"][protocol]["ndcg@10"] <= 1
    assert results["machine"]["backend"] == keras.backend.backend()
    fame = keras.saving.load_model(out / "fame.keras", safe_mode=True)
    assert fame.num_experts == 2

    # Resuming from the saved SASRec skips its training and reports the same SASRec test numbers.
    out2 = tmp_path / "run2"
    argv2 = argv[:]
    argv2[argv2.index(str(out))] = str(out2)
    assert cli.main("toys", argv2 + ["--sasrec-model", str(out / "sasrec.keras"), "--fame-warmup-epochs", "1", "--fame-dropout", "0.1"]) == 0
    again = json.loads((out2 / "results.json").read_text())
    assert "training" not in again["sasrec"]
    assert again["config"]["fame_dropout"] == 0.1 and results["config"]["fame_dropout"] == 0.5
    assert again["fame"]["warmup"]["epochs_run"] == 1 and again["fame"]["training"]["epochs_run"] == 2
    np.testing.assert_allclose(
        again["sasrec"]["test"]["exclude_history"]["ndcg@10"], results["sasrec"]["test"]["exclude_history"]["ndcg@10"]
    )


def test_missing_data_gives_a_clear_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "find_sequence_file", lambda dataset, data_dir=None: None)
    assert cli.main("toys", ["--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Toys_and_Games.txt not found" in err and "FAME_DATA_DIR" in err


def test_w_f_gain_without_the_identity_start_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main("toys", ["--w-f-init", "random", "--w-f-gain", "2"])
    assert exit_info.value.code == 2
    assert "--w-f-gain" in capsys.readouterr().err


def test_find_sequence_file_prefers_the_given_folder(tmp_path, monkeypatch):
    (tmp_path / "beauty").mkdir()
    (tmp_path / "beauty" / "Beauty.txt").write_text("1 1 2 3\n")
    monkeypatch.delenv("FAME_DATA_DIR", raising=False)
    assert cli.find_sequence_file("beauty", str(tmp_path)) == str(tmp_path / "beauty" / "Beauty.txt")
