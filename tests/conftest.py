import importlib.util
import os

import keras
import numpy as np
import pytest

from keras_fame.data.registry import find_sequence_file


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)


def real_data_file(dataset):
    """Path of a real dataset, or skip with the reason (FAME_DATA_DIR or ../shared/data).

    Under CI (`CI=true`, set by `.ci/run`) a missing dataset fails the test instead: CI has the data
    beside the checkout, so its absence is a broken set-up, not a reason to pass.
    """
    path = find_sequence_file(dataset)
    if path is None:
        reason = f"real {dataset} data not found: set FAME_DATA_DIR or place ../shared/data beside the checkout"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (CI=true: the real-data tests must run)")
        pytest.skip(reason)
    return path


@pytest.fixture
def load_script():
    """Imports a script of the checkout (e.g. `"benchmarks/multi_seed.py"`) as a module, by its path."""

    def load(relative_path):
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), relative_path)
        spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def real_data():
    """`real_data(dataset)`: the path of a real dataset (`real_data_file`)."""
    return real_data_file


@pytest.fixture
def toys_file():
    return real_data_file("toys")


@pytest.fixture
def beauty_file():
    return real_data_file("beauty")


@pytest.fixture
def last_position_loss():
    """`loss(model, ids, last_targets, **trainer_kwargs)` -> `(loss, targets)` of one `test_on_batch`.

    `LastPositionTrainer(model, **trainer_kwargs)` compiled with SGD(0) and the
    masked softmax cross-entropy; `targets` is zero but for its last column,
    `last_targets` (0 there is a padding target).
    """
    from keras_fame.losses import MaskedSoftmaxCrossEntropy
    from keras_fame.training import LastPositionTrainer

    def loss(model, ids, last_targets, **trainer_kwargs):
        trainer = LastPositionTrainer(model, **trainer_kwargs)
        trainer.compile(optimizer=keras.optimizers.SGD(0.0), loss=MaskedSoftmaxCrossEntropy())
        targets = np.zeros_like(ids)
        targets[:, -1] = last_targets
        return float(trainer.test_on_batch(ids, targets)), targets

    return loss
