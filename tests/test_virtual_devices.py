"""benchmarks/virtual_devices.py: every layout trains from the same start on the same batch to the same loss."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_each_layout_reports_a_step_time_and_the_same_first_loss(backend, tmp_path):
    pytest.importorskip(backend)
    out = tmp_path / "virtual.json"
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "virtual_devices.py"), "--data", "synthetic",
                    "--model", "sasrec", "--batch", "32", "--warmup", "1", "--rounds", "1", "--out", str(out)],
                   check=True, env=env, cwd=str(tmp_path), capture_output=True, timeout=600)
    report = json.loads(out.read_text())
    layouts = [row["layout"] for row in report["rows"]]
    expected = ["1 device", "data, 2 devices", "data, 4 devices", "model, 2 x 2"] if backend == "jax" else [
        "1 device", "data, 4 devices"]
    assert layouts == expected and report["backend"] == backend
    losses = [row["first_step_loss"] for row in report["rows"]]
    assert max(losses) - min(losses) < 1e-3, losses  # the layouts move the work, not what it computes
    assert all(row["median_step_ms"] > 0 for row in report["rows"])
    assert {"command", "git", "machine", "packages"} <= set(report)
