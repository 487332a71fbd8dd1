import numpy as np
import pytest

from keras_fame.layers import MoEQueryAttention
from keras_fame.testing import run_layer_test


def _numpy_attention(x, mask, wq, bq, wk, bk, wv, bv):
    """Plain causal per-head attention, one query projection per head."""
    q = np.einsum("btd,dhe->bthe", x, wq) + bq
    k = np.einsum("btd,dhe->bthe", x, wk) + bk
    v = np.einsum("btd,dhe->bthe", x, wv) + bv
    logits = np.einsum("bihe,bjhe->bhij", q, k) / np.sqrt(q.shape[-1])
    t = x.shape[1]
    allowed = np.tril(np.ones((t, t), bool))[None, None] & mask[:, None, None, :]
    logits = np.where(allowed, logits, -1e9)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    return np.einsum("bhij,bjhe->bihe", w, v)


def _inputs(batch=3, seq=6, d=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, seq, d)).astype("float32")
    mask = np.ones((batch, seq), bool)
    mask[0, :2] = False  # left padding
    return x, mask


def test_layer_contract():
    x, mask = _inputs()
    run_layer_test(
        MoEQueryAttention,
        {"num_heads": 2, "head_dim": 4, "num_experts": 3, "dropout": 0.1},
        (x, mask),
        expected_output_shape=(3, 6, 2, 4),
        # query/key/value kernels + biases, router
        expected_num_trainable_weights=7,
    )


def test_one_expert_is_plain_attention():
    x, mask = _inputs()
    layer = MoEQueryAttention(num_heads=2, head_dim=4, num_experts=1)
    out, router = layer(x, mask, return_router_weights=True)
    w = {v.path.split("/")[-1]: np.asarray(v) for v in layer.weights}
    expected = _numpy_attention(
        x, mask, w["query_kernel"][:, :, 0], w["query_bias"][:, 0], w["key_kernel"], w["key_bias"],
        w["value_kernel"], w["value_bias"],
    )
    real = mask[..., None, None]
    np.testing.assert_allclose(np.where(real, out, 0), np.where(real, expected, 0), atol=1e-5)
    np.testing.assert_allclose(router, 1.0)


def test_experts_mix_their_attention_outputs():
    # With N experts, the output is the router-weighted sum of N plain attentions.
    x, mask = _inputs(seed=1)
    layer = MoEQueryAttention(num_heads=2, head_dim=4, num_experts=3)
    out, router = layer(x, mask, return_router_weights=True)
    router = np.asarray(router)
    np.testing.assert_allclose(router.sum(-1), 1.0, atol=1e-6)
    assert router.min() >= 0
    w = {v.path.split("/")[-1]: np.asarray(v) for v in layer.weights}
    per_expert = np.stack(
        [
            _numpy_attention(
                x, mask, w["query_kernel"][:, :, n], w["query_bias"][:, n], w["key_kernel"], w["key_bias"],
                w["value_kernel"], w["value_bias"],
            )
            for n in range(3)
        ],
        axis=3,
    )  # [b, t, H, N, e]
    stacked = per_expert.reshape(*per_expert.shape[:3], -1)
    logits = np.einsum("bthc,hcn->bthn", stacked, w["router_kernel"])
    beta = np.exp(logits - logits.max(-1, keepdims=True))
    beta /= beta.sum(-1, keepdims=True)
    expected = np.einsum("bthn,bthne->bthe", beta, per_expert)
    real = mask[..., None, None]
    np.testing.assert_allclose(np.where(real, out, 0), np.where(real, expected, 0), atol=1e-5)
    np.testing.assert_allclose(np.where(real, router, 0), np.where(real, beta, 0), atol=1e-5)


@pytest.mark.parametrize("num_experts", [1, 4])
def test_causal_and_padding(num_experts):
    x, mask = _inputs(seed=2)
    layer = MoEQueryAttention(num_heads=2, head_dim=4, num_experts=num_experts)
    base = np.asarray(layer(x, mask))
    changed = x.copy()
    changed[:, 4] += 5.0  # a later item
    out = np.asarray(layer(changed, mask))
    np.testing.assert_allclose(out[:, :4], base[:, :4], atol=1e-5)
    assert not np.allclose(out[:, 4:], base[:, 4:])
    # Whatever sits at a padded position is never attended to.
    junk = x.copy()
    junk[0, :2] = 100.0
    np.testing.assert_allclose(np.asarray(layer(junk, mask))[0, 2:], base[0, 2:], atol=1e-5)


def test_load_from_attention_copies_keys_values_and_noisy_queries_regrouping_heads():
    source = MoEQueryAttention(num_heads=4, head_dim=2, num_experts=1)
    source(np.ones((1, 3, 8), "float32"))
    target = MoEQueryAttention(num_heads=2, head_dim=4, num_experts=3)
    target(np.ones((1, 3, 8), "float32"))
    target.load_from_attention(source, query_noise=0.0)
    # A [d, H, d'] kernel is a [d, d] matrix whose columns are grouped by head.
    np.testing.assert_array_equal(np.asarray(target.key_kernel).reshape(8, 8), np.asarray(source.key_kernel).reshape(8, 8))
    np.testing.assert_array_equal(np.asarray(target.value_kernel).reshape(8, 8), np.asarray(source.value_kernel).reshape(8, 8))
    queries = np.asarray(target.query_kernel)  # [d, H, N, d']
    for n in range(3):
        np.testing.assert_array_equal(queries[:, :, n].reshape(8, 8), np.asarray(source.query_kernel).reshape(8, 8))
    target.load_from_attention(source, query_noise=0.5, seed=1)
    queries = np.asarray(target.query_kernel)
    assert not np.allclose(queries[:, :, 0], queries[:, :, 1])  # the experts differ


def test_load_from_attention_refuses_a_mixture_source_and_other_shapes():
    mixture = MoEQueryAttention(num_heads=2, head_dim=4, num_experts=2)
    mixture(np.ones((1, 3, 8), "float32"))
    target = MoEQueryAttention(num_heads=2, head_dim=4, num_experts=2)
    target(np.ones((1, 3, 8), "float32"))
    with pytest.raises(ValueError, match="one-expert"):
        target.load_from_attention(mixture)
    wide = MoEQueryAttention(num_heads=2, head_dim=8, num_experts=1)
    wide(np.ones((1, 3, 16), "float32"))
    with pytest.raises(ValueError, match="shapes differ"):
        target.load_from_attention(wide)


def _numpy_facet_attention(x, mask, w, facets):
    """Plain causal attention whose logits also hold sum_k (c^k W_Q^k) . (c^k W_K^k), values the items'."""
    q = np.einsum("btd,dhe->bthe", x, w["query_kernel"][:, :, 0]) + w["query_bias"][:, 0]
    k = np.einsum("btd,dhe->bthe", x, w["key_kernel"]) + w["key_bias"]
    v = np.einsum("btd,dhe->bthe", x, w["value_kernel"]) + w["value_bias"]
    logits = np.einsum("bihe,bjhe->bhij", q, k)
    for i, c in enumerate(facets):
        fq = np.einsum("btw,whe->bthe", c, w[f"facet_query_kernel_{i}"])
        fk = np.einsum("btw,whe->bthe", c, w[f"facet_key_kernel_{i}"])
        logits = logits + np.einsum("bihe,bjhe->bhij", fq, fk)
    logits = logits / np.sqrt(q.shape[-1])
    t = x.shape[1]
    allowed = np.tril(np.ones((t, t), bool))[None, None] & mask[:, None, None, :]
    logits = np.where(allowed, logits, -1e9)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhij,bjhe->bihe", p, v)


def test_facet_attention_starts_as_plain_attention_and_adds_the_facet_term():
    x, mask = _inputs(seed=3)
    rng = np.random.default_rng(4)
    facets = [rng.normal(size=(3, 6, 5)).astype("float32"), rng.normal(size=(3, 6, 2)).astype("float32")]
    plain = MoEQueryAttention(num_heads=2, head_dim=4)
    faceted = MoEQueryAttention(num_heads=2, head_dim=4, facet_dims=[5, 2])
    plain(x, mask)
    faceted(x, mask, facet_sequences=facets)
    for name in ("query_kernel", "key_kernel", "value_kernel", "query_bias", "key_bias", "value_bias"):
        getattr(faceted, name).assign(np.asarray(getattr(plain, name)))
    real = mask[..., None, None]
    # The facet keys start at zero: exactly the plain attention (a transplanted model starts where it ended).
    np.testing.assert_array_equal(np.where(real, faceted(x, mask, facet_sequences=facets), 0),
                                  np.where(real, plain(x, mask), 0))
    for kernel in faceted.facet_key_kernels:
        kernel.assign(rng.normal(size=tuple(kernel.shape)).astype("float32"))
    w = {v.path.split("/")[-1]: np.asarray(v) for v in faceted.weights}
    expected = _numpy_facet_attention(x, mask, w, facets)
    got = np.asarray(faceted(x, mask, facet_sequences=facets))
    np.testing.assert_allclose(np.where(real, got, 0), np.where(real, expected, 0), atol=1e-4)
    # Causal: a later item's facets never change an earlier position.
    later = [f.copy() for f in facets]
    later[0][:, 4:] += 3.0
    np.testing.assert_allclose(np.asarray(faceted(x, mask, facet_sequences=later))[:, :4], got[:, :4], atol=1e-5)
    with pytest.raises(ValueError, match="this attention has 2 facets"):
        faceted(x, mask)
    assert MoEQueryAttention.from_config(faceted.get_config()).facet_dims == (5, 2)
