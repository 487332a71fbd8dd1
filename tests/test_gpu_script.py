"""benchmarks/gpu.sh --dry-run: every step of the GPU run, on the CPU with tiny data (JAX backend)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_gpu_script_runs_every_step_on_the_cpu(tmp_path):
    pytest.importorskip("jax")
    out = tmp_path / "out"
    proc = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu.sh"), "--dry-run", str(out)],
                          env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    names = sorted(os.listdir(out))
    assert names == ["devices.txt", "distributed.log", "jax-fame-full-every-prefix.json", "jax-fame-full.json",
                     "jax-fame-sampled.json", "jax-sasrec-full.json", "sampled_step_scaling.json"]
    assert len(names) <= 8  # the device tool brings back at most 8 files
    for name in names:
        if name.startswith("jax-"):
            row = json.loads((out / name).read_text())
            assert row["backend"] == "jax" and row["seconds_per_epoch"] > 0 and row["eval_all_users_seconds"] > 0
    scaling = json.loads((out / "sampled_step_scaling.json").read_text())
    assert [r["num_items"] for r in scaling["rows"]] == [1000, 5000] and scaling["git"]
    assert "FAME H=2 N=4" in (out / "distributed.log").read_text()


def test_the_gpu_script_refuses_a_machine_without_its_carried_data(tmp_path):
    proc = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu.sh"), str(tmp_path / "out")],
                          env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    if os.path.isfile(os.path.join(ROOT, ".gpu", "data", "toys", "Toys_and_Games.txt")):
        pytest.skip(".gpu/ is prepared in this checkout")
    assert proc.returncode == 2 and ".gpu/data/toys/Toys_and_Games.txt is missing" in proc.stderr
