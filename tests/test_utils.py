import os

import keras
import numpy as np
import pytest

from keras_fame import SASRec
from keras_fame.utils import save_model_atomic


def test_save_model_atomic_keeps_the_previous_file_when_a_save_dies(tmp_path, monkeypatch):
    path = tmp_path / "model.keras"
    first = SASRec(20, hidden_dim=8, max_len=4)
    save_model_atomic(first, path)
    before = path.read_bytes()
    second = SASRec(20, hidden_dim=8, max_len=4)

    def dies_half_way(filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt("killed during the save")

    monkeypatch.setattr(second, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_model_atomic(second, path)
    assert path.read_bytes() == before  # the previous model, whole
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]  # no temporary file left
    restored = keras.saving.load_model(path, safe_mode=True)
    x = np.array([[1, 2, 3, 4]], "int32")
    np.testing.assert_allclose(restored.predict_on_batch(x), first.predict_on_batch(x), rtol=1e-6, atol=1e-6)


def test_tensorflow_startup_lines_are_dropped_and_everything_else_kept(tmp_path):
    """A fresh process importing keras_fame prints no TF start-up lines, but real stderr output survives."""
    import subprocess
    import sys

    code = ("import os, sys\n"
            "from keras_fame import _quiet\n"
            "with _quiet.tensorflow_startup_lines_dropped(force=True):\n"
            "    os.write(2, b'I0000 00:00:1796184245.820050    5422 port.cc:153] oneDNN custom operations are on.\\n')\n"
            "    os.write(2, b'a real error line\\n')\n"
            "    print('a python warning', file=sys.stderr)\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "a real error line" in proc.stderr and "a python warning" in proc.stderr
    assert "port.cc" not in proc.stderr and "absl::InitializeLog" not in proc.stderr, proc.stderr
    # The real start-up of a fresh process: importing the package prints none of TensorFlow's lines.
    proc = subprocess.run([sys.executable, "-c", "import keras_fame"], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0 and "port.cc" not in proc.stderr and "cpu_feature_guard" not in proc.stderr, proc.stderr


def test_deterministic_environment_sets_the_start_up_variables_once():
    from keras_fame.utils import deterministic_environment

    env = deterministic_environment(7, {"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "HOME": "/h"})
    assert env["PYTHONHASHSEED"] == "7" and env["TF_DETERMINISTIC_OPS"] == "1" and env["TF_CUDNN_DETERMINISTIC"] == "1"
    assert env["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=2", "--xla_gpu_deterministic_ops=true"]
    assert env["HOME"] == "/h"
    assert deterministic_environment(7, env) == env  # idempotent: the flag is not appended twice
    assert deterministic_environment(1, {})["XLA_FLAGS"] == "--xla_gpu_deterministic_ops=true"


def test_predict_rows_cuts_every_output_to_the_batch():
    import keras

    from keras_fame.utils import predict_rows

    inputs = keras.Input((3,))
    model = keras.Model(inputs, {"a": keras.layers.Dense(2)(inputs), "b": keras.ops.sum(inputs, axis=-1)})
    x = np.arange(30, dtype="float32").reshape(10, 3)
    out = predict_rows(model, x)
    assert out["a"].shape == (10, 2) and out["b"].tolist() == x.sum(axis=1).tolist()
    assert predict_rows(model, x, rows=4)["b"].shape == (4,)
