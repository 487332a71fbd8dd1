import numpy as np

from keras_fame.layers import LastPosition
from keras_fame.testing import run_layer_test


def test_layer_contract_and_value():
    x = np.random.default_rng(0).normal(size=(2, 5, 3, 4)).astype("float32")
    layer = run_layer_test(LastPosition, {}, (x,), expected_output_shape=(2, 3, 4), expected_num_trainable_weights=0)
    np.testing.assert_array_equal(np.asarray(layer(x)), x[:, -1])
