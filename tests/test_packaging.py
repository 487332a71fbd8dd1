"""The built wheel and sdist, installed outside the checkout, import and run."""

import os
import subprocess
import sys
import tarfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(command, **kwargs):
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    import keras_fame

    # --no-build-isolation: the build backend (setuptools) is already installed, no download needed.
    _run([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist")])
    (wheel,) = (tmp_path / "dist").glob("keras_fame-*.whl")
    assert wheel.name.startswith(f"keras_fame-{keras_fame.__version__}-")  # the version is single-sourced
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert all(n.startswith(("keras_fame/", "keras_fame-")) for n in names), names  # no tests, examples, data
    assert "keras_fame/export/__main__.py" in names and "keras_fame/layers/moe_query_attention.py" in names

    site = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)])
    smoke = (
        "import numpy as np, keras_fame, os, sys\n"
        "assert keras_fame.__file__.startswith(sys.argv[1]), keras_fame.__file__\n"
        "model = keras_fame.FAME(100, heads=2, experts=2, hidden_dim=8)\n"
        "top = model.recommend([[1, 2, 3]], k=5)['item_ids']\n"
        "assert top.shape == (1, 5) and not set(top[0]) & {0, 1, 2, 3}\n"
        "print('ok', keras_fame.__version__)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    out = _run([sys.executable, "-c", smoke, str(site)], cwd=tmp_path, env=env)
    assert out.strip().endswith(f"ok {keras_fame.__version__}")
    assert "usage" in _run([sys.executable, "-m", "keras_fame.export", "--help"], cwd=tmp_path, env=env).lower()
    # The console script the wheel declares, as pip installed it.
    help_text = _run([str(site / "bin" / "keras-fame"), "--help"], cwd=tmp_path, env=env)
    assert "recommend" in help_text and "export" in help_text


def test_sdist_carries_the_package_and_its_metadata(tmp_path):
    script = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    name = _run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT).strip().splitlines()[-1]
    with tarfile.open(tmp_path / name) as archive:
        names = archive.getnames()
    top = name.removesuffix(".tar.gz")
    for path in ("pyproject.toml", "README.md", "keras_fame/__init__.py", "keras_fame/models/fame.py"):
        assert f"{top}/{path}" in names, path
