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
