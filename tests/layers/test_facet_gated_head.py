import numpy as np
import pytest

from keras_fame.layers import FacetGatedHead, HeadSliceIdentity
from keras_fame.layers.item_scores import PADDING_SCORE
from keras_fame.testing import run_layer_test


def _inputs(seed=0, lead=(3, 5), heads=2, head_dim=4, items=11):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=lead + (heads, head_dim)).astype("float32")
    table = rng.normal(size=(items, heads * head_dim)).astype("float32")
    return features, table


def test_layer_contract():
    features, table = _inputs()
    run_layer_test(
        FacetGatedHead,
        {"num_heads": 2, "head_dim": 4, "dropout": 0.1},
        (features, table),
        expected_output_shape=(3, 5, 11),
        # FFN' (2 kernels + 2 biases), LayerNorm (2), W_f, gate kernel + bias
        expected_num_trainable_weights=9,
    )


def test_one_matmul_equals_explicit_gated_sum():
    features, table = _inputs(seed=1, heads=3, head_dim=4)
    head = FacetGatedHead(num_heads=3, head_dim=4, item_projection_initializer="glorot_uniform")
    scores, gates, head_scores = head(features, table, return_gates=True, return_head_scores=True)
    scores, gates, head_scores = map(np.asarray, (scores, gates, head_scores))
    facets = np.asarray(head.facets(features))
    w_f = np.asarray(head.item_projection)  # [d, H, d']
    explicit = np.zeros(scores.shape)
    for h in range(3):
        x_h = table @ w_f[:, h, :]  # x_v^(h), [V, d']
        per_head = facets[..., h, :] @ x_h.T
        np.testing.assert_allclose(head_scores[..., h, 1:], per_head[..., 1:], rtol=1e-4, atol=1e-4)
        explicit += gates[..., h : h + 1] * per_head
    np.testing.assert_allclose(scores[..., 1:], explicit[..., 1:], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gates.sum(-1), 1.0, atol=1e-6)
    assert (scores[..., 0] == PADDING_SCORE).all()


def test_gate_is_softmax_of_concatenated_facets():
    features, table = _inputs(seed=2)
    head = FacetGatedHead(num_heads=2, head_dim=4)
    _, gates = head(features, table, return_gates=True)
    facets = np.asarray(head.facets(features)).reshape(3, 5, 8)
    logits = facets @ np.asarray(head.gate_kernel).reshape(8, 2) + np.asarray(head.gate_bias)
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(gates), expected, rtol=1e-5)


def test_any_leading_shape():
    features, table = _inputs(lead=(7,))
    head = FacetGatedHead(num_heads=2, head_dim=4)
    assert tuple(head(features, table).shape) == (7, 11)


def test_identity_start_scores_like_sasrec():
    # H = 1: x_v^(1) = x_v, so the score is SASRec's tied-embedding x_v . F.
    features, table = _inputs(seed=3, heads=1, head_dim=8)
    head = FacetGatedHead(num_heads=1, head_dim=8)  # default start: HeadSliceIdentity(gain=H)
    scores = np.asarray(head(features, table))
    facets = np.asarray(head.facets(features))[..., 0, :]
    np.testing.assert_allclose(scores[..., 1:], facets @ table[1:].T, rtol=1e-4, atol=1e-4)

    # H heads, default gain H: while the gate is uniform, the score is x_v . [F^(1) | ... | F^(H)].
    features, table = _inputs(seed=4, heads=4, head_dim=2)
    head = FacetGatedHead(num_heads=4, head_dim=2)
    head.build(features.shape, table.shape)
    head.gate_kernel.assign(np.zeros(head.gate_kernel.shape, "float32"))
    scores, gates = map(np.asarray, head(features, table, return_gates=True))
    np.testing.assert_allclose(gates, 0.25, atol=1e-6)
    stacked = np.asarray(head.facets(features)).reshape(3, 5, 8)
    np.testing.assert_allclose(scores[..., 1:], stacked @ table[1:].T, rtol=1e-4, atol=1e-4)


def test_head_slice_identity_rejects_bad_shapes():
    np.testing.assert_array_equal(np.asarray(HeadSliceIdentity(gain=1.0)((4, 2, 2))).reshape(4, 4), np.eye(4))
    np.testing.assert_array_equal(np.asarray(HeadSliceIdentity()((6, 3, 2))).reshape(6, 6), 3 * np.eye(6))
    with pytest.raises(ValueError, match=r"H \* d' == d"):
        HeadSliceIdentity()((6, 2, 2))


def test_layer_contract_with_gates_and_head_scores():
    features, table = _inputs()
    run_layer_test(
        FacetGatedHead,
        {"num_heads": 2, "head_dim": 4, "gate_temperature": 0.5},
        (features, table),
        expected_output_shape=[(3, 5, 11), (3, 5, 2), (3, 5, 2, 11)],
        expected_num_trainable_weights=9,
        call_kwargs={"return_gates": True, "return_head_scores": True},
    )
