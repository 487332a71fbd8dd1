"""Resume after a real kill: finished stages are skipped, the running one continues from its last epoch."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_fame.data import TrainingBatches, write_sequences
from keras_fame.data.synthetic import planted_facets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The child trains through the real CLI. With KILL_MARKER set, once FAME has
# checkpointed an epoch, fetching a batch of a later FAME epoch writes the
# marker and sleeps, so the parent's SIGKILL lands in the middle of an epoch.
CHILD = """
import os, sys, time
from keras_fame.experiments import cli
from keras_fame.data import TrainingBatches

marker = os.environ.get("KILL_MARKER")
fetch = TrainingBatches.__getitem__

def slow(self, index):
    latest = os.path.join(sys.argv[2], "checkpoints", "fame", "latest")
    if marker and index >= 1 and os.path.isfile(latest):
        open(marker, "w").close()
        time.sleep(120)
    return fetch(self, index)

TrainingBatches.__getitem__ = slow
sys.exit(cli.main("toys", ["--data-dir", sys.argv[1], "--output-dir", sys.argv[2], *sys.argv[3:]]))
"""

FLAGS = ["--hidden-dim", "8", "--heads", "2", "--experts", "2", "--max-len", "10", "--epochs", "3",
         "--fame-epochs", "4", "--patience", "10", "--batch-size", "32", "--verbose", "0", "--seed", "5", "--deterministic"]


def _child(data_dir, out, env=None):
    command = [sys.executable, "-c", CHILD, str(data_dir), str(out), *FLAGS]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT, **(env or {})))


def test_a_run_killed_mid_epoch_resumes_to_the_metrics_of_an_uninterrupted_run(tmp_path):
    data, _ = planted_facets(num_users=150, max_length=10, seed=2)
    os.makedirs(tmp_path / "toys")
    write_sequences(str(tmp_path / "toys" / "Toys_and_Games.txt"), data)

    whole = _child(tmp_path, tmp_path / "whole")
    output = whole.communicate(timeout=600)[0]
    assert whole.returncode == 0, output[-3000:]

    marker = tmp_path / "marker"
    killed = _child(tmp_path, tmp_path / "killed", {"KILL_MARKER": str(marker)})
    deadline = time.time() + 600
    while not marker.exists():
        assert killed.poll() is None, killed.communicate()[0][-3000:]
        assert time.time() < deadline, "the child never reached a later FAME epoch"
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)  # a real kill: no exception handler, no atexit
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    out = tmp_path / "killed"
    partial = json.loads((out / "results.json").read_text())
    assert "test" in partial["sasrec"] and "fame" not in partial  # SASRec finished, FAME was running
    assert (out / "checkpoints" / "fame" / "latest").is_file()

    rerun = _child(tmp_path, out)
    output = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, output[-3000:]
    assert "SASRec: finished before" in output
    results = json.loads((out / "results.json").read_text())
    expected = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert results["fame"]["training"]["resumed_from_epoch"] >= 1
    for stage in ("sasrec", "fame"):
        assert results[stage]["test"] == expected[stage]["test"]
    fame = results["fame"]["training"]
    assert fame["best_epoch"] == expected["fame"]["training"]["best_epoch"]
    assert fame["best_validation"] == expected["fame"]["training"]["best_validation"]
    assert len(fame["seconds_per_epoch"]) == fame["epochs_run"] == expected["fame"]["training"]["epochs_run"]
    assert not (out / "checkpoints" / "fame").exists()  # removed once the stage finished

    # A finished run is not trained again; a different configuration in the same folder is refused.
    again = _child(tmp_path, out)
    output = again.communicate(timeout=600)[0]
    assert again.returncode == 0 and "FAME: finished before" in output, output[-3000:]
    assert json.loads((out / "results.json").read_text())["fame"]["test"] == expected["fame"]["test"]


def test_a_different_configuration_in_the_same_folder_is_refused(tmp_path):
    from keras_fame.experiments import run_pipeline

    data, _ = planted_facets(num_users=60, max_length=8, seed=0)
    seq = tmp_path / "seq.txt"
    write_sequences(str(seq), data)
    out = str(tmp_path / "out")
    small = dict(hidden_dim=8, num_heads=2, num_experts=2, max_len=8, epochs=1, verbose=0, skip_fame=True)
    run_pipeline(str(seq), "toys", out, **small)
    with pytest.raises(ValueError, match=r"results.json is from a run with a different configuration \(dropout differ"):
        run_pipeline(str(seq), "toys", out, dropout=0.4, **small)
    run_pipeline(str(seq), "toys", out, dropout=0.4, resume=False, **small)  # starting over is allowed


def test_a_changed_fame_stage_setting_keeps_the_sasrec_stage_and_trains_fame_again(tmp_path):
    from keras_fame.experiments import run_pipeline

    data, _ = planted_facets(num_users=60, max_length=8, seed=0)
    seq = tmp_path / "seq.txt"
    write_sequences(str(seq), data)
    out = str(tmp_path / "out")
    small = dict(hidden_dim=8, num_heads=2, max_len=8, epochs=1, fame_epochs=1, verbose=0, deterministic=True)
    first = run_pipeline(str(seq), "toys", out, num_experts=1, **small)
    sasrec_mtime = os.path.getmtime(os.path.join(out, "sasrec.keras"))
    second = run_pipeline(str(seq), "toys", out, num_experts=2, fame_dropout=0.2, **small)
    assert os.path.getmtime(os.path.join(out, "sasrec.keras")) == sasrec_mtime  # loaded, not trained again
    assert second["sasrec"] == first["sasrec"]
    # Provenance: one entry per process that worked on the folder; the first one's machine is kept.
    assert len(first["provenance"]) == 1 and len(second["provenance"]) == 2
    assert second["provenance"][0] == first["provenance"][0] and second["machine"] == first["machine"]
    entry = second["provenance"][1]
    assert entry["git"]["commit"] == subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                                    text=True).stdout.strip()
    assert entry["command"] and entry["machine"]["cpu_count"] == os.cpu_count() and "keras" in entry["packages"]
    assert second["config"]["num_experts"] == 2 and second["config"]["fame_dropout"] == 0.2
    assert keras.saving.load_model(os.path.join(out, "fame.keras")).num_experts == 2
    fresh = run_pipeline(str(seq), "toys", str(tmp_path / "fresh"), num_experts=2, fame_dropout=0.2, **small)
    assert second["fame"]["test"] == fresh["fame"]["test"]  # the FAME a run of these settings trains
    with pytest.raises(ValueError, match=r"different configuration \(dropout differ"):
        run_pipeline(str(seq), "toys", out, num_experts=2, fame_dropout=0.2, dropout=0.4, **small)


def test_batches_of_an_epoch_depend_on_seed_and_epoch_only():
    rng = np.random.default_rng(0)
    inputs = rng.integers(0, 20, (50, 6)).astype("int32")
    targets = np.roll(inputs, -1, axis=1)
    a, b = TrainingBatches(inputs, targets, batch_size=8, seed=1), TrainingBatches(inputs, targets, batch_size=8, seed=1)
    for _ in range(3):
        a.on_epoch_end()
    b.set_epoch(3)
    assert len(a) == len(b)
    for i in range(len(a)):
        for x, y in zip(a[i], b[i]):
            np.testing.assert_array_equal(x, y)
    b.set_epoch(2)
    assert any(not np.array_equal(a[i][0], b[i][0]) for i in range(len(a)))


class _Interrupt(Exception):
    pass


class _StopAt(keras.callbacks.Callback):
    """Raises at the start of epoch `epoch` (0-based), after the checkpoints of the epochs before it."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Interrupt(epoch)


@pytest.mark.parametrize("objective", [dict(every_prefix=True), dict(negatives=16)], ids=["every_prefix", "sampled"])
def test_trainer_wrapped_fits_resume_from_their_checkpoint(tmp_path, objective):
    # Every-prefix (`LastPositionTrainer`) and sampled-softmax (`SampledSoftmaxTrainer`) training wrap the
    # model in a trainer; a resumed fit loads the checkpoint into it before any batch has run.
    import keras_fame
    from keras_fame.data import leave_one_out
    from keras_fame.training import fit_with_early_stopping

    data, _ = planted_facets(num_users=120, max_length=10, seed=3)
    split = leave_one_out(data, max_len=10)

    def run(checkpoint_dir=None, callbacks=None):
        keras.utils.set_random_seed(4)
        model = keras_fame.SASRec(data.num_items, hidden_dim=8, num_heads=2, max_len=10, dropout=0.1)
        report = fit_with_early_stopping(model, split, epochs=4, batch_size=64, patience=10, seed=4, verbose=0,
                                         checkpoint_dir=checkpoint_dir, callbacks=callbacks, **objective)
        return model, report

    whole, expected = run()
    folder = str(tmp_path / "checkpoints")
    with pytest.raises(_Interrupt):
        run(folder, [_StopAt(2)])
    assert os.path.isfile(os.path.join(folder, "latest"))
    resumed, report = run(folder)
    assert report["resumed_from_epoch"] == 2
    assert report["epochs_run"] == expected["epochs_run"] == 4
    assert [e["epoch"] for e in report["validation_history"]] == [1, 2, 3, 4]
    for got, want in zip(report["validation_history"], expected["validation_history"]):
        assert got == pytest.approx(want, abs=1e-4)
    for a, b in zip(resumed.get_weights(), whole.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not os.path.exists(folder)  # removed once training finished
