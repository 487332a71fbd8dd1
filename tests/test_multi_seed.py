"""The multi-seed runner: stored runs are skipped, a full run reuses its finished --sasrec-only twin."""

import json
import os

from keras_fame.data import write_sequences
from keras_fame.data.synthetic import planted_facets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _runner(load_script, monkeypatch, tmp_path):
    module = load_script("benchmarks/multi_seed.py")
    monkeypatch.setattr(module, "RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(module, "RESULTS", str(tmp_path / "results"))
    return module


def test_a_full_run_continues_from_its_finished_sasrec_only_twin(load_script, monkeypatch, tmp_path):
    runner = _runner(load_script, monkeypatch, tmp_path)
    monkeypatch.setenv("PYTHONPATH", ROOT)
    data, _ = planted_facets(num_users=80, max_length=10, seed=1)
    (tmp_path / "data" / "toys").mkdir(parents=True)
    write_sequences(str(tmp_path / "data" / "toys" / "Toys_and_Games.txt"), data)
    flags = ["--data-dir", str(tmp_path / "data"), "--hidden-dim", "8", "--heads", "2", "--experts", "2",
             "--max-len", "10", "--epochs", "2", "--fame-epochs", "2", "--text-init", "none", "--every-prefix"]

    assert runner.reuse_sasrec_only_run("toys", flags, 0, str(tmp_path / "nothing")) is None  # no twin yet
    first = runner.run_one("toys", "a_sasrec", [*flags, "--sasrec-only"], 0)
    sasrec_only = json.load(open(first))
    assert "fame" not in sasrec_only and "test" in sasrec_only["sasrec"]

    full = json.load(open(runner.run_one("toys", "a", flags, 0)))
    assert full["sasrec"]["test"] == sasrec_only["sasrec"]["test"]  # the twin's SASRec, not a new one
    assert "test" in full["fame"]
    log = open(os.path.join(runner.RESULTS, f"{runner.run_key('toys', flags, 0)}.log")).read()
    assert "SASRec: finished before" in log
    assert runner.run_one("toys", "a", flags, 0) is not None  # stored: skipped, not rerun
    assert runner.reuse_sasrec_only_run("toys", [*flags, "--sasrec-only"], 0, str(tmp_path / "x")) is None
