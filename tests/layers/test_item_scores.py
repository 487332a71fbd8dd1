import numpy as np

from keras_fame.layers import ItemScores
from keras_fame.layers.item_scores import PADDING_SCORE
from keras_fame.testing import run_layer_test


def test_layer_contract():
    rng = np.random.default_rng(0)
    features, table = rng.normal(size=(3, 5, 8)).astype("float32"), rng.normal(size=(11, 8)).astype("float32")
    run_layer_test(ItemScores, {}, (features, table), expected_output_shape=(3, 5, 11), expected_num_trainable_weights=0)


def test_scores_are_dot_products_with_the_padding_column_masked():
    rng = np.random.default_rng(1)
    features, table = rng.normal(size=(4, 8)).astype("float32"), rng.normal(size=(11, 8)).astype("float32")
    scores = np.asarray(ItemScores()(features, table))
    np.testing.assert_allclose(scores[:, 1:], features @ table[1:].T, rtol=1e-5, atol=1e-5)
    assert (scores[:, 0] == PADDING_SCORE).all()
