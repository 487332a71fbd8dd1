import os

import keras
import numpy as np
import pytest

from keras_fame import FAME, SASRec
from keras_fame.data import TrainingBatches, from_lists, leave_one_out
from keras_fame.losses import MaskedSoftmaxCrossEntropy


def _ids(seed=0, batch=4, seq=7, items=30):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, items + 1, size=(batch, seq)).astype("int32")
    ids[0, :3] = 0
    ids[1, :5] = 0
    return ids


def _layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_keras_fame_fame_signature():
    model = FAME(100, heads=4, experts=8)
    assert (model.num_heads, model.num_experts, model.hidden_dim, model.num_blocks, model.max_len) == (4, 8, 64, 2, 50)


def test_single_head_single_expert_matches_hand_computation():
    model = FAME(
        30, hidden_dim=8, num_heads=1, num_experts=1, num_blocks=1, max_len=7, dropout=0.0,
        item_projection_initializer="glorot_uniform",  # a W_f that is not the identity
    )
    ids = _ids()
    scores = np.asarray(model(ids))
    w = {v.path: np.asarray(v) for v in model.weights}
    get = lambda suffix: next(val for path, val in w.items() if path.endswith(suffix))
    eps = model.layer_norm_epsilon

    # Embedding: LayerNorm(item + position), zeroed at padding.
    x = get("item_embeddings")[ids] + get("position_embeddings")[None]
    x = _layer_norm(x, get("item_embedding/norm/gamma"), get("item_embedding/norm/beta"), eps)
    mask = ids > 0
    x = x * mask[..., None]
    # One head, one expert: plain causal attention.
    q = x @ get("query_kernel").reshape(8, 8) + get("query_bias").reshape(8)
    k = x @ get("key_kernel").reshape(8, 8) + get("key_bias").reshape(8)
    v = x @ get("value_kernel").reshape(8, 8) + get("value_bias").reshape(8)
    logits = q @ k.transpose(0, 2, 1) / np.sqrt(8)
    allowed = np.tril(np.ones((7, 7), bool))[None] & mask[:, None, :]
    logits = np.where(allowed, logits, -1e9)
    att = np.exp(logits - logits.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    f = _layer_norm(x + att @ v, get("moe_block/norm/gamma"), get("moe_block/norm/beta"), eps)
    # FFN' and its LayerNorm; a single head's gate is 1.
    hidden = np.maximum(f @ get("ffn_inner/kernel") + get("ffn_inner/bias"), 0)
    ffn = hidden @ get("ffn_outer/kernel") + get("ffn_outer/bias")
    F = _layer_norm(f + ffn, get("ffn_norm/gamma"), get("ffn_norm/beta"), eps)
    items = get("item_embeddings") @ get("item_projection").reshape(8, 8)
    expected = F @ items.T
    np.testing.assert_allclose(scores[..., 1:][mask], expected[..., 1:][mask], rtol=1e-4, atol=1e-4)


def test_causality_and_bucketing_invariance():
    model = FAME(30, hidden_dim=8, num_heads=2, num_experts=3, max_len=7)
    ids = _ids(1)
    base = np.asarray(model(ids))
    changed = ids.copy()
    changed[:, -1] = (changed[:, -1] % 30) + 1
    np.testing.assert_allclose(np.asarray(model(changed))[:, :-1], base[:, :-1], atol=1e-5)
    # Cutting leading all-padding columns (length bucketing) changes nothing.
    assert not ids[:2, :3].any()  # rows 0 and 1 start with >= 3 padding columns
    cropped = np.asarray(model(ids[:2, 3:]))
    np.testing.assert_allclose(cropped, base[:2, 3:], atol=1e-5)
    padded = np.concatenate([np.zeros((4, 0), "int32"), ids], axis=1)
    np.testing.assert_allclose(np.asarray(model(padded)), base, atol=1e-6)


def test_scorer_equals_last_position_and_gates_sum_to_one():
    model = FAME(30, hidden_dim=8, num_heads=2, num_experts=3, max_len=7)
    ids = _ids(2)
    full = np.asarray(model(ids))[:, -1]
    out = model.scorer(explain=True).predict_on_batch(ids)
    np.testing.assert_allclose(out["scores"], full, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["head_weights"].sum(-1), 1.0, atol=1e-6)
    assert out["head_scores"].shape == (4, 2, 31)


def test_recommend_helper():
    model = FAME(30, hidden_dim=8, num_heads=2, num_experts=2, max_len=5)
    histories = [[3, 4, 5, 6, 7, 8, 9, 10], [1], [2, 2, 2]]
    out = model.recommend(histories, k=5, explain=True)
    assert out["item_ids"].shape == (3, 5) and out["head_item_ids"].shape == (3, 2, 5)
    for row, history in enumerate(histories):
        assert not set(out["item_ids"][row]) & set(history)  # the whole history, not only the last max_len
        assert 0 not in out["item_ids"][row]
        assert np.all(np.diff(out["scores"][row]) <= 0)
    kept = model.recommend(histories, k=30, exclude_seen=False)
    assert sorted(kept["item_ids"][0].tolist()) == list(range(1, 31))
    with pytest.raises(ValueError, match="not an item id"):
        model.recommend([[1, 31]])
    with pytest.raises(ValueError, match="k=31"):
        model.recommend([[1]], k=31)


def test_from_sasrec_copies_weights():
    sasrec = SASRec(30, hidden_dim=8, num_heads=2, num_blocks=2, max_len=7)
    sasrec(_ids())
    fame = FAME.from_sasrec(sasrec, num_experts=3, query_noise=0.01)
    for a, b in zip(sasrec.item_embedding.get_weights(), fame.item_embedding.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(sasrec.transformer_blocks[0].get_weights(), fame.transformer_blocks[0].get_weights()):
        np.testing.assert_array_equal(a, b)
    src, dst = sasrec.transformer_blocks[1].attention, fame.moe_attention
    np.testing.assert_array_equal(np.asarray(src.key_kernel), np.asarray(dst.key_kernel))
    np.testing.assert_array_equal(np.asarray(src.value_kernel), np.asarray(dst.value_kernel))
    q_src = np.asarray(src.query_kernel)  # [d, H, 1, d']
    q_dst = np.asarray(dst.query_kernel)  # [d, H, N, d']
    for n in range(3):
        np.testing.assert_allclose(q_dst[:, :, n], q_src[:, :, 0], atol=0.05 * q_src.std() + 1e-6)
    assert not np.allclose(q_dst[:, :, 0], q_dst[:, :, 1])  # experts differ


def test_fit_and_keras_round_trip(tmp_path):
    data = from_lists([[1, 2, 3, 4, 5, 6], [2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3], [1, 3, 5, 7, 2, 4]])
    split = leave_one_out(data, max_len=6)
    model = FAME(data.num_items, hidden_dim=8, num_heads=2, num_experts=2, max_len=6)
    model.compile()
    history = model.fit(TrainingBatches(split.train_inputs, split.train_targets, batch_size=2), epochs=3, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    path = os.path.join(tmp_path, "fame.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(restored, FAME)
    ids = split.test.inputs
    np.testing.assert_array_equal(np.asarray(restored(ids)), np.asarray(model(ids)))
    np.testing.assert_array_equal(
        restored.recommend(ids, k=3)["item_ids"], model.recommend(ids, k=3)["item_ids"]
    )


def test_loss_is_mean_over_real_positions():
    y_true = np.array([[0, 0, 2], [0, 1, 3]])
    logits = np.random.default_rng(0).normal(size=(2, 3, 4)).astype("float32")
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.mean([log_softmax[0, 2, 2], log_softmax[1, 1, 1], log_softmax[1, 2, 3]])
    got = float(MaskedSoftmaxCrossEntropy()(y_true, logits))
    assert got == pytest.approx(expected, rel=1e-5)


def test_from_sasrec_with_other_head_count_keeps_the_copied_blocks_exact():
    sasrec = SASRec(30, hidden_dim=8, num_heads=1, num_blocks=2, max_len=7)
    ids = _ids(3)
    sasrec(ids)
    fame = FAME.from_sasrec(sasrec, num_heads=4, num_experts=2)
    assert fame.num_heads == 4 and fame.transformer_blocks[0].num_heads == 1
    # The first block's output is the same in both models.
    def first_block(model):
        x, _, mask = model.item_embedding(ids)
        return np.asarray(model.transformer_blocks[0](x, padding_mask=mask))

    np.testing.assert_allclose(first_block(fame), first_block(sasrec), atol=1e-6)
    assert fame.get_config()["block_heads"] == 1
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(fame)).transformer_blocks[0].num_heads == 1


def test_aliases_heads_experts_and_conflicts():
    model = FAME(20, hidden_dim=8, heads=2, experts=3, max_len=4)
    assert (model.num_heads, model.num_experts) == (2, 3)
    assert FAME(20, hidden_dim=8, num_heads=2, heads=2, max_len=4).num_heads == 2
    default = FAME(20, hidden_dim=8, max_len=4)
    assert (default.num_heads, default.num_experts) == (4, 8)
    with pytest.raises(ValueError, match="num_heads=4 and its alias heads=2 disagree"):
        FAME(20, hidden_dim=8, num_heads=4, heads=2)
    with pytest.raises(ValueError, match="num_experts=2 and its alias experts=3 disagree"):
        FAME(20, hidden_dim=8, num_experts=2, experts=3)


@pytest.mark.parametrize("kind", ["sasrec", "fame"])
def test_recommend_with_item_chunks_equals_the_full_ranking(kind):
    import keras_fame

    keras.utils.set_random_seed(3)
    if kind == "sasrec":
        model = keras_fame.SASRec(300, hidden_dim=16, num_heads=2, max_len=10)
    else:
        model = keras_fame.FAME(300, hidden_dim=16, num_heads=2, num_experts=3, max_len=10)
    rng = np.random.default_rng(0)
    histories = [rng.integers(1, 301, size=rng.integers(1, 30)).tolist() for _ in range(40)]
    explain = kind == "fame"
    full = model.recommend(histories, k=10, explain=explain)
    for chunk_size in (64, 100):  # 100: the last chunk (item 300) is narrower than k
        chunked = model.recommend(histories, k=10, explain=explain, chunk_size=chunk_size)
        assert set(chunked) == set(full)
        for name, value in full.items():
            if name.endswith("item_ids"):
                np.testing.assert_array_equal(chunked[name], value)
            else:
                np.testing.assert_allclose(chunked[name], value, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="chunk_size"):
        model.recommend(histories, k=10, chunk_size=5)


def test_files_saved_before_the_moe_block_layer_load_with_the_flat_layout(tmp_path):
    import json
    import zipfile

    keras.utils.set_random_seed(5)
    flat = FAME(40, hidden_dim=8, num_heads=2, num_experts=3, max_len=6, moe_layout="flat")
    flat.save(tmp_path / "flat.keras")
    # Such a file, as written before `moe_layout` existed: the same archive without the key.
    with zipfile.ZipFile(tmp_path / "flat.keras") as src, zipfile.ZipFile(tmp_path / "old.keras", "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                del config["config"]["moe_layout"]
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    old = keras.saving.load_model(tmp_path / "old.keras", safe_mode=True)
    assert old.moe_layout == "flat" and not hasattr(old, "moe_block")
    ids = _ids()
    np.testing.assert_allclose(np.asarray(old(ids)), np.asarray(flat(ids)), rtol=1e-6, atol=1e-6)
    # New models use the named block, and the two layouts compute the same function.
    block = FAME(40, hidden_dim=8, num_heads=2, num_experts=3, max_len=6)
    assert block.moe_layout == "block" and block.moe_attention is block.moe_block.attention
    by_role = {}
    for v in flat.weights:
        by_role[v.path.replace("moe_attention/", "moe_block/attention/").replace("moe_norm/", "moe_block/norm/")] = v
    for v in block.weights:
        v.assign(np.asarray(by_role[v.path]))
    np.testing.assert_allclose(np.asarray(block(ids)), np.asarray(flat(ids)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="moe_layout"):
        FAME(40, hidden_dim=8, num_heads=2, num_experts=3, moe_layout="nested")


@pytest.mark.parametrize("moe_layout", ["block", "flat"])
def test_the_scorer_explains_with_the_routers_weights_at_the_newest_position(moe_layout):
    keras.utils.set_random_seed(2)
    model = FAME(30, hidden_dim=8, num_heads=2, num_experts=3, max_len=6, moe_layout=moe_layout)
    ids = np.random.default_rng(0).integers(0, 31, size=(4, 6)).astype("int32")
    out = model.scorer(explain=True).predict_on_batch(ids)
    x, _, mask = model.item_embedding(ids)
    for block in model.transformer_blocks:
        x = block(x, padding_mask=mask)
    _, router = model.moe_attention(x, padding_mask=mask, return_router_weights=True)
    np.testing.assert_allclose(out["router_weights"], np.asarray(router)[:, -1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["router_weights"].sum(-1), 1.0, rtol=1e-5)
    assert "router_weights" not in model.scorer().predict_on_batch(ids)
