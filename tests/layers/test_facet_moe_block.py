import numpy as np

from keras_fame.layers import FacetMoEBlock
from keras_fame.testing import run_layer_test


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 6, 8)).astype("float32")
    mask = np.ones((2, 6), bool)
    mask[0, :2] = False
    return x, mask


def test_layer_contract():
    run_layer_test(
        FacetMoEBlock,
        {"num_heads": 2, "head_dim": 4, "num_experts": 3, "dropout": 0.1},
        _inputs(),
        expected_output_shape=(2, 6, 2, 4),
        # MoE attention: W_Q, W_K, W_V, their biases and the routers' kernel; the LayerNorm's gamma, beta
        expected_num_trainable_weights=9,
    )


def test_layer_contract_with_router_weights():
    run_layer_test(
        FacetMoEBlock,
        {"num_heads": 2, "head_dim": 4, "num_experts": 3},
        _inputs(1),
        expected_output_shape=[(2, 6, 2, 4), (2, 6, 2, 3)],
        expected_num_trainable_weights=9,
        call_kwargs={"return_router_weights": True},
    )
