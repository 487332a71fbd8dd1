"""The multi-seed runner: stored runs are skipped, a full run reuses its finished --sasrec-only twin."""

import json
import os

import pytest

from keras_fame.data import write_sequences
from keras_fame.data.synthetic import planted_facets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _runner(load_script, monkeypatch, tmp_path):
    module = load_script("benchmarks/multi_seed.py")
    monkeypatch.setattr(module, "RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(module, "RESULTS", str(tmp_path / "results"))
    return module


def _runner_on_small_toys(load_script, monkeypatch, tmp_path):
    """The runner, its subprocesses able to import the checkout, and small planted data as Toys under tmp_path/data."""
    runner = _runner(load_script, monkeypatch, tmp_path)
    monkeypatch.setenv("PYTHONPATH", ROOT)
    data, _ = planted_facets(num_users=80, max_length=10, seed=1)
    (tmp_path / "data" / "toys").mkdir(parents=True)
    write_sequences(str(tmp_path / "data" / "toys" / "Toys_and_Games.txt"), data)
    return runner


def test_a_full_run_continues_from_its_finished_sasrec_only_twin(load_script, monkeypatch, tmp_path):
    runner = _runner_on_small_toys(load_script, monkeypatch, tmp_path)
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


def test_runs_that_differ_only_in_fame_stage_flags_share_one_sasrec_stage(load_script, monkeypatch, tmp_path):
    runner = _runner_on_small_toys(load_script, monkeypatch, tmp_path)
    common = ["--data-dir", str(tmp_path / "data"), "--hidden-dim", "8", "--max-len", "10", "--epochs", "2",
              "--fame-epochs", "2", "--text-init", "none", "--deterministic", "--heads", "2"]
    n1, n2 = [*common, "--experts", "1"], [*common, "--experts", "2"]
    assert runner.sasrec_stage_flags(n2) == [*common[:8], *common[10:]]  # without --fame-epochs 2 and --experts 2
    assert runner.sasrec_stage_flags(["--fame-dropout", "0.1", "--dropout", "0.3"]) == ["--dropout", "0.3"]
    # A switch has no value: the flag after it stays.
    assert runner.sasrec_stage_flags(["--gate-facets", "--dropout", "0.3"]) == ["--dropout", "0.3"]

    donor = json.load(open(runner.run_one("toys", "n1", n1, 0)))
    key1 = runner.run_key("toys", n1, 0)
    shared = json.load(open(runner.run_one("toys", "n2", n2, 0)))
    log = open(os.path.join(runner.RESULTS, f"{runner.run_key('toys', n2, 0)}.log")).read()
    assert "SASRec: finished before" in log  # the donor's stage, not trained again
    assert shared["sasrec"]["test"] == donor["sasrec"]["test"]
    assert shared["sasrec"]["training"] == donor["sasrec"]["training"]
    assert shared["multi_seed"]["sasrec_from"] == key1
    assert shared["multi_seed"]["flags"] == n2
    assert shared["config"]["num_experts"] == 2

    # The same configuration trained from scratch (no donor) gives the same FAME: sharing changes the cost only.
    monkeypatch.setattr(runner, "RUNS", str(tmp_path / "alone" / "runs"))
    monkeypatch.setattr(runner, "RESULTS", str(tmp_path / "alone" / "results"))
    alone = json.load(open(runner.run_one("toys", "n2", n2, 0)))
    assert "sasrec_from" not in alone["multi_seed"]
    assert alone["sasrec"]["test"] == donor["sasrec"]["test"]
    assert alone["fame"]["test"] == shared["fame"]["test"]


def test_compare_gives_the_difference_in_std_and_a_paired_t_test(load_script):
    runner = load_script("benchmarks/multi_seed.py")
    a = [(2, 3.0), (0, 1.0), (1, 2.0)]
    b = [(0, 2.0), (1, 3.5), (2, 3.5), (3, 9.0)]
    c = runner.compare(a, b[:3])
    assert (c["mean_a"], c["mean_b"], c["diff"]) == (2.0, 3.0, 1.0)
    assert abs(c["std_a"] - 1.0) < 1e-12 and abs(c["std_b"] - 0.75 ** 0.5) < 1e-12
    assert abs(c["diff_in_std"] - 1.0) < 1e-12  # in units of the larger std
    assert c["paired_seeds"] == [0, 1, 2] and c["paired_diffs"] == [1.0, 1.5, 0.5]
    # Paired t = mean / (sd / sqrt(n)) = 1 / (0.5 / sqrt(3)); Student t with 2 degrees of freedom has
    # the closed-form CDF 1/2 + t / (2 sqrt(2 + t^2)).
    t = 3 ** 0.5 / 0.5
    assert abs(c["paired_p"] - 2 * (0.5 - t / (2 * (2 + t * t) ** 0.5))) < 1e-9
    assert 0 < c["welch_p"] < 1
    # Seeds only one side has are in the means, not in the pairs.
    c = runner.compare(a, b)
    assert c["n_b"] == 4 and c["paired_seeds"] == [0, 1, 2] and c["mean_b"] == 4.5
    # One seed: no std, no test, but still the difference.
    c = runner.compare(a, [(0, 2.5)])
    assert c["diff"] == 0.5 and c["diff_in_std"] == 0.5 and c["welch_p"] != c["welch_p"]


def test_a_sasrec_only_run_is_not_counted_beside_its_finished_twin(load_script, monkeypatch):
    runner = load_script("benchmarks/multi_seed.py")
    monkeypatch.setattr(runner, "EARLIER_RANDOM_START", {})
    full_flags, only_flags = ["--x"], ["--x", "--sasrec-only"]
    metrics = {"exclude_history": {"ndcg@10": 0.5}}

    def result(flags, seed, name, fame=True):
        r = {"dataset": "toys", "sasrec": {"test": metrics},
             "multi_seed": {"plan_configuration": name, "flags": flags, "seed": seed,
                            "key": runner.run_key("toys", flags, seed)}}
        if fame:
            r["fame"] = {"test": metrics}
        return r

    results = [result(only_flags, 0, "x_sasrec", fame=False), result(only_flags, 1, "x_sasrec", fame=False),
               result(full_flags, 0, "x")]
    groups = runner.collect({"x": full_flags, "x_sasrec": only_flags}, results)
    assert [s for s, _, _ in groups[("toys", "x_sasrec", "sasrec")]] == [1]  # seed 0 is the full run's
    assert [s for s, _, _ in groups[("toys", "x", "sasrec")]] == [0]
    assert ("toys", "x_sasrec", "fame") not in groups
    # Without its twin in the table (another plan), the --sasrec-only run is its own row, every seed.
    groups = runner.collect({"x_sasrec": only_flags}, results)
    assert [s for s, _, _ in groups[("toys", "x_sasrec", "sasrec")]] == [0, 1]


def test_validation_history_is_read_back_from_the_log_of_an_older_run(load_script, monkeypatch, tmp_path):
    runner = load_script("benchmarks/multi_seed.py")
    monkeypatch.setattr(runner, "RESULTS", str(tmp_path))
    line = "Epoch {}: val_hr@10={:.4f}  val_ndcg@10={:.4f}  (exclude_history, 4.0s)\n"
    (tmp_path / "k.log").write_text(
        "== SASRec on toys: 3 users, 5 items ==\n" + line.format(1, 0.1, 0.05) + line.format(2, 0.2, 0.07)
        + "reading ...\n" + line.format(2, 0.3, 0.08)  # resumed: epoch 2 again, the last one counts
        + "== FAME (H=2, N=4) fine-tuned from SASRec ==\n" + line.format(1, 0.4, 0.09))
    old = {"multi_seed": {"key": "k"}, "sasrec": {"training": {}}, "fame": {"training": {}}}
    assert runner.validation_history(old, "sasrec") == [
        {"epoch": 1, "hr@10": 0.1, "ndcg@10": 0.05}, {"epoch": 2, "hr@10": 0.3, "ndcg@10": 0.08}]
    assert runner.validation_history(old, "fame") == [{"epoch": 1, "hr@10": 0.4, "ndcg@10": 0.09}]
    new = {"multi_seed": {"key": "k"}, "sasrec": {"training": {"validation_history": [{"epoch": 1, "ndcg@10": 0.5}]}}}
    assert runner.validation_history(new, "sasrec") == [{"epoch": 1, "ndcg@10": 0.5}]  # stored history first
    assert runner.validation_history({"multi_seed": {"key": "missing"}}, "sasrec") == []


def test_compare_table_pairs_configurations_or_a_configuration_s_two_models(load_script, monkeypatch):
    runner = load_script("benchmarks/multi_seed.py")
    monkeypatch.setitem(runner.PLANS, "t", {"x": ["--x"], "y": ["--y"]})

    def test(v):
        return {"exclude_history": {"ndcg@10": v}}

    groups = {("toys", "x", "sasrec"): [(0, test(0.10), {}), (1, test(0.20), {})],
              ("toys", "x", "fame"): [(0, test(0.15), {}), (1, test(0.20), {})],
              ("toys", "y", "sasrec"): [(0, test(0.30), {}), (1, test(0.40), {})]}
    monkeypatch.setattr(runner, "collect", lambda configurations: groups)
    rows = runner.compare_table("t", [("x", "y"), ("x:sasrec", "x:fame")]).splitlines()[5:]
    assert len(rows) == 2  # x vs y: SASRec only (y has no FAME); x's SASRec vs its FAME
    assert rows[0].startswith("| toys | x SASRec | y SASRec | 2 / 2 | 0.1500 | 0.3500 | +0.2000 |")
    assert "+0.2000, +0.2000 (0,1)" in rows[0]
    assert rows[1].startswith("| toys | x SASRec | x FAME | 2 / 2 | 0.1500 | 0.1750 | +0.0250 |")
    assert "+0.0500, +0.0000 (0,1)" in rows[1]
    # A side without a model takes the other side's: x's FAME against y's FAME, which y lacks (no row),
    # and y's SASRec against x's SASRec (not x's first model by default).
    assert runner.compare_table("t", [("x:fame", "y")]).splitlines()[5:] == []
    (row,) = runner.compare_table("t", [("y:sasrec", "x")]).splitlines()[5:]
    assert row.startswith("| toys | y SASRec | x SASRec | 2 / 2 | 0.3500 | 0.1500 | -0.2000 |")
    with pytest.raises(ValueError, match="sasrec or fame"):
        runner.compare_table("t", [("x:bert", "y")])


def test_a_fame_stage_variant_starts_from_its_siblings_finished_sasrec_stage(load_script, monkeypatch, tmp_path):
    runner = _runner(load_script, monkeypatch, tmp_path)
    base = ["--text-init", "pca", "--item-facets", "auto"]
    variant = [*base, "--fame-facet-loss-weight", "0.5", "--gate-temperature", "0.5"]
    donor = tmp_path / "runs" / runner.run_key("toys", base, 0)
    donor.mkdir(parents=True)
    (donor / "flags.json").write_text(json.dumps({"dataset": "toys", "flags": base, "seed": 0}))
    finished = {"config": {"seed": 0}, "sasrec": {"test": {"x": 1}}, "fame": {"test": {"y": 2}}, "table": "t"}
    (donor / "results.json").write_text(json.dumps(finished))
    out = str(tmp_path / "runs" / runner.run_key("toys", variant, 0))
    assert runner.reuse_sibling_sasrec("toys", variant, 0, out) is None  # no sasrec.keras yet: not finished
    (donor / "sasrec.keras").write_bytes(b"model")
    (donor / "text_table.npy").write_bytes(b"table")
    assert runner.reuse_sibling_sasrec("toys", variant, 1, out) is None  # another seed
    assert runner.reuse_sibling_sasrec("toys", [*variant, "--dropout", "0.1"], 0, out) is None  # a SASRec flag differs
    assert runner.reuse_sibling_sasrec("toys", [*base, "--facet-loss-weight", "0.5"], 0, out) is None  # SASRec-stage loss
    assert runner.reuse_sibling_sasrec("toys", variant, 0, out) == str(donor)
    copied = json.loads(open(os.path.join(out, "results.json")).read())
    assert copied == {"config": {"seed": 0}, "sasrec": {"test": {"x": 1}}}  # its FAME stage is not carried over
    assert open(os.path.join(out, "sasrec.keras"), "rb").read() == b"model"
    assert runner.reuse_sibling_sasrec("toys", variant, 0, out) is None  # the folder has started: never overwritten
