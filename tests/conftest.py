import os

import keras
import numpy as np
import pytest

from keras_fame.data.registry import find_sequence_file


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)


def real_data_file(dataset):
    """Path of a real dataset, or skip with the reason (FAME_DATA_DIR or ../shared/data)."""
    path = find_sequence_file(dataset)
    if path is None:
        pytest.skip(f"real {dataset} data not found: set FAME_DATA_DIR or place ../shared/data beside the checkout")
    return path


@pytest.fixture
def toys_file():
    return real_data_file("toys")


@pytest.fixture
def beauty_file():
    return real_data_file("beauty")
