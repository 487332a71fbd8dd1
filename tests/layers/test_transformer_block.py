import numpy as np

from keras_fame.layers import TransformerBlock
from keras_fame.testing import run_layer_test


def test_transformer_block_contract_and_causality():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    mask = np.ones((2, 5), bool)
    mask[1, :2] = False
    run_layer_test(
        TransformerBlock,
        {"hidden_dim": 8, "num_heads": 2, "dropout": 0.1},
        (x, mask),
        expected_output_shape=(2, 5, 8),
        # Q/K/V kernels+biases (6), 2 LayerNorms (4), FFN (4)
        expected_num_trainable_weights=14,
    )
    block = TransformerBlock(hidden_dim=8, num_heads=2)
    base = np.asarray(block(x, mask))
    later = x.copy()
    later[:, 3:] += 1.0
    np.testing.assert_allclose(np.asarray(block(later, mask))[:, :3], base[:, :3], atol=1e-5)
    assert np.all(base[1, :2] == 0)


def test_layer_contract_gelu():
    x = np.random.default_rng(0).normal(size=(2, 6, 8)).astype("float32")
    run_layer_test(
        TransformerBlock,
        {"hidden_dim": 8, "num_heads": 2, "intermediate_dim": 16, "activation": "gelu"},
        (x,),
        expected_output_shape=(2, 6, 8),
        expected_num_trainable_weights=14,
    )
