"""The built wheel, installed into a fresh venv outside the checkout, imports and runs; the sdist is complete."""

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

    # A fresh venv that sees this environment's dependencies (TensorFlow, Keras, ...) through a
    # .pth line, but not the editable checkout (a .pth line adds a path; the .pth files in it, such as
    # the editable finder, are not run). The wheel is the only keras_fame it can import.
    fresh = tmp_path / "fresh"
    _run([sys.executable, "-m", "venv", "--without-pip", str(fresh)])
    python = fresh / "bin" / "python"
    fresh_site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    deps_site = next(p for p in sys.path if p.endswith("site-packages") and os.path.isdir(os.path.join(p, "keras")))
    with open(os.path.join(fresh_site, "dependencies.pth"), "w") as f:
        f.write(deps_site + "\n")
    before = subprocess.run([str(python), "-c", "import keras, keras_fame"], capture_output=True, text=True, cwd=tmp_path,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert "No module named 'keras_fame'" in before.stderr, before.stderr[-2000:]  # keras is there, keras_fame not yet
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", str(wheel)])
    smoke = (
        "import numpy as np, keras_fame, os, sys\n"
        "assert keras_fame.__file__.startswith(sys.argv[1]), keras_fame.__file__\n"
        "model = keras_fame.FAME(100, heads=2, experts=2, hidden_dim=8)\n"
        "top = model.recommend([[1, 2, 3]], k=5)['item_ids']\n"
        "assert top.shape == (1, 5) and not set(top[0]) & {0, 1, 2, 3}\n"
        "print('ok', keras_fame.__version__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = _run([str(python), "-c", smoke, fresh_site], cwd=tmp_path, env=env)
    assert out.strip().endswith(f"ok {keras_fame.__version__}")
    assert "usage" in _run([str(python), "-m", "keras_fame.export", "--help"], cwd=tmp_path, env=env).lower()
    # The console script the wheel declares, as pip installed it into the fresh venv.
    help_text = _run([str(fresh / "bin" / "keras-fame"), "--help"], cwd=tmp_path, env=env)
    assert "recommend" in help_text and "export" in help_text


def test_sdist_carries_the_package_and_its_metadata(tmp_path):
    script = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    name = _run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT).strip().splitlines()[-1]
    with tarfile.open(tmp_path / name) as archive:
        names = archive.getnames()
    top = name.removesuffix(".tar.gz")
    for path in ("pyproject.toml", "README.md", "keras_fame/__init__.py", "keras_fame/models/fame.py"):
        assert f"{top}/{path}" in names, path
