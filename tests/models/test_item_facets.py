"""Item facets inside SASRec and FAME: fused scores, the auxiliary facet loss, saving, growing the catalogue."""

import keras
import numpy as np
import pytest

from keras_fame import FAME, SASRec
from keras_fame.losses import MaskedSoftmaxCrossEntropy
from keras_fame.training import AllPositionsTrainer

V = 30


def _facets(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 5, V + 1).astype("int32"), rng.integers(0, 7, V + 1).astype("int32")]


def _fame(facets=None, **kwargs):
    keras.utils.set_random_seed(3)
    return FAME(V, hidden_dim=8, num_heads=2, num_experts=2, max_len=6, dropout=0.0,
                item_facets=facets if facets is not None else _facets(), **kwargs)


def _histories(seed=1, avoid=None):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, V + 1, size=(5, 6)).astype("int32")
    if avoid is not None:
        ids[ids == avoid] = avoid % V + 1
    return ids


def _softmax_ce(logits, labels):
    logits = logits - logits.max(-1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]


def test_fused_scores_equal_the_gated_score_of_the_fused_table():
    # Eq. 11 as the paper writes it, item side: sum_h g_h (x_v W_f^(h)) . F^(h), in numpy on the fused table.
    model = _fame()
    ids = _histories()
    out = model.scorer(explain=True).predict_on_batch(ids)
    features = keras.Model(model.inputs, model._head_wiring[0])(ids)[:, -1]  # [users, H, d']
    facets = model.facet_head.facets(features)
    gates = np.asarray(model.facet_head.gates(facets))
    facets = np.asarray(facets)
    table = np.asarray(model.item_embedding.item_table())
    w_f = np.asarray(model.facet_head.item_projection)  # [d, H, d']
    per_head = np.einsum("vd,dhe,uhe->uhv", table, w_f, facets)
    want = np.einsum("uh,uhv->uv", gates, per_head)
    np.testing.assert_allclose(np.asarray(out["scores"])[:, 1:], want[:, 1:], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["head_scores"])[:, :, 1:], per_head[:, :, 1:], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["head_weights"]), gates, rtol=1e-5, atol=1e-6)
    # The factors: the user vector against the fused table itself (no projected table).
    user_model, item_matrix = model.score_factors()
    np.testing.assert_allclose(item_matrix, table, rtol=1e-6, atol=1e-7)
    scores = np.asarray(user_model.predict_on_batch(ids)) @ item_matrix.T
    np.testing.assert_allclose(scores[:, 1:], want[:, 1:], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", [SASRec, FAME])
def test_changing_one_items_label_changes_exactly_the_scores_that_should_change(cls):
    extra = {"num_heads": 2, "num_experts": 2} if cls is FAME else {}
    keras.utils.set_random_seed(3)
    facets = _facets()
    model = cls(V, hidden_dim=8, max_len=6, dropout=0.0, item_facets=facets, **extra)
    item = 7
    ids = _histories(avoid=item)  # histories without the item: only its own score column may move
    before = np.asarray(model.scorer().predict_on_batch(ids)["scores"])
    facets[0][item] = facets[0][item] % 4 + 1
    model.item_embedding.set_item_facets(facets)
    after = np.asarray(model.scorer().predict_on_batch(ids)["scores"])
    moved = np.flatnonzero(np.abs(after - before).max(axis=0) > 1e-6)
    assert moved.tolist() == [item]
    # A history holding the item changes as a whole: the item is embedded from the same table.
    ids[:, -1] = item
    assert not np.allclose(model.scorer().predict_on_batch(ids)["scores"], after)


def test_auxiliary_loss_equals_numpy_cross_entropy(last_position_loss):
    model = _fame()
    weight = 0.7
    ids = _histories()
    # One padding target (0): left out of both losses.
    loss, targets = last_position_loss(model, ids, [3, 9, 0, 21, 30], facet_loss_weight=weight)

    out = model.scorer(explain=True).predict_on_batch(ids)
    facets = np.asarray(model.facet_head.facets(model.get_layer("moe_block")(
        model.transformer_blocks[0](*_embedded(model, ids)), padding_mask=ids > 0)))[:, -1]  # [users, H, d']
    w_f = np.asarray(model.facet_head.item_projection)  # [d, H, d']
    y = targets[:, -1]
    valid = y > 0
    scores = np.asarray(out["scores"])
    rec = _softmax_ce(scores[valid], y[valid]).mean()
    aux = []
    for k, labels in enumerate(model.item_facets):
        rows = np.asarray(model.item_embedding.facet_rows(k)) @ w_f[:, k, :]  # [C_k + 1, d']
        logits = facets[:, k] @ rows.T
        logits[:, 0] = -1e9
        label = labels[y]
        keep = valid & (label > 0)
        aux.append(_softmax_ce(logits[keep], label[keep]).mean() if keep.any() else 0.0)
    np.testing.assert_allclose(loss, rec + weight * np.mean(aux), rtol=1e-4)


def _embedded(model, ids):
    embedded, _, mask = model.item_embedding(ids)
    return embedded, mask


def test_with_the_facet_loss_off_training_is_todays_exactly():
    """Weight 0: the trainers return the plain logits and train exactly as without the facet loss."""
    model = _fame()
    ids = _histories()
    targets = np.roll(ids, -1, axis=1)
    trainer = AllPositionsTrainer(model, facet_loss_weight=0.0)
    np.testing.assert_allclose(np.asarray(trainer(ids)), np.asarray(model(ids)), rtol=1e-5, atol=1e-5)
    with_aux = AllPositionsTrainer(model, facet_loss_weight=0.5)
    out = with_aux(ids)
    np.testing.assert_allclose(np.asarray(out["logits"]), np.asarray(model(ids)), rtol=1e-5, atol=1e-5)
    assert [tuple(t.shape) for t in out["facet_logits"]] == [(5, 6, 5), (5, 6, 7)]

    a, b = _fame(), _fame()
    a.compile(optimizer=keras.optimizers.Adam(1e-2))
    trainer = AllPositionsTrainer(b, facet_loss_weight=0.0)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2), loss=MaskedSoftmaxCrossEntropy())
    for _ in range(2):
        la, lb = a.train_on_batch(ids, targets), trainer.train_on_batch(ids, targets)
        np.testing.assert_allclose(float(la), float(lb), rtol=1e-5)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_allclose(np.asarray(wa), np.asarray(wb), rtol=1e-4, atol=1e-6)


def test_a_model_without_facets_has_todays_weights():
    keras.utils.set_random_seed(3)
    plain = FAME(V, hidden_dim=8, num_heads=2, num_experts=2, max_len=6)
    assert not any("facet_labels" in v.path or "facet_embeddings" in v.path for v in plain.weights)
    assert plain.item_facets == []
    with pytest.raises(ValueError, match="needs a model built with item_facets"):
        AllPositionsTrainer(plain, facet_loss_weight=0.5)


def test_facets_round_trip_through_keras_files_and_transplant(tmp_path):
    keras.utils.set_random_seed(3)
    sasrec = SASRec(V, hidden_dim=8, num_heads=2, max_len=6, item_facets=_facets(), facet_fusion="sum")
    fame = FAME.from_sasrec(sasrec, num_experts=2)
    assert fame.item_embedding.facet_fusion == "sum"
    for got, want in zip(fame.item_facets, sasrec.item_facets):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(np.asarray(fame.item_embedding.item_table()), np.asarray(sasrec.item_embedding.item_table()))
    path = str(tmp_path / "fame.keras")
    fame.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    ids = _histories()
    np.testing.assert_allclose(np.asarray(restored(ids)), np.asarray(fame(ids)), rtol=1e-6, atol=1e-6)
    for got, want in zip(restored.item_facets, fame.item_facets):
        np.testing.assert_array_equal(got, want)


def test_new_items_enter_with_their_facet_embeddings():
    model = _fame(gate_temperature=0.5)
    rows = np.zeros((2, 8), "float32")  # no content, no ID history: only the facets place them
    grown = model.with_new_items(rows, item_facets=[np.array([1, 0]), np.array([2, 0])])
    assert grown.num_items == V + 2 and grown.facet_head.gate_temperature == 0.5
    table = np.asarray(grown.item_embedding.item_table())
    np.testing.assert_allclose(table[: V + 1], np.asarray(model.item_embedding.item_table()), atol=1e-7)
    expected = np.asarray(grown.item_embedding.facet_rows(0))[1] + np.asarray(grown.item_embedding.facet_rows(1))[2]
    np.testing.assert_allclose(table[V + 1], expected, atol=1e-7)
    assert not table[V + 2].any()  # unlabelled and without content: the zero row
    with pytest.raises(ValueError, match=r"item_facets\[1\]\[1\] = 9 is above the facet's 6 labels"):
        model.with_new_items(rows, item_facets=[np.array([1, 0]), np.array([9, 0])])
    with pytest.raises(ValueError, match="built without facets"):
        FAME(V, hidden_dim=8, num_heads=2, num_experts=2, max_len=6).with_new_items(rows, item_facets=[[1, 0]])


def test_gate_temperature_sharpens_the_gate():
    ids = _histories()
    base = np.asarray(_fame().scorer().predict_on_batch(ids)["head_weights"])
    sharp = np.asarray(_fame(gate_temperature=0.25).scorer().predict_on_batch(ids)["head_weights"])
    logits = np.log(base)
    expected = np.exp(logits / 0.25) / np.exp(logits / 0.25).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(sharp, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="gate_temperature=0"):
        _fame(gate_temperature=0)


def test_row_multiple_pads_the_tables_and_changes_no_score():
    # The spare rows (for sharding over devices) are never read: same scores, same catalogue edits.
    facets = _facets()
    keras.utils.set_random_seed(3)
    plain = SASRec(V, hidden_dim=8, max_len=6, item_content=True, item_facets=facets)
    keras.utils.set_random_seed(3)
    padded = SASRec(V, hidden_dim=8, max_len=6, item_content=True, item_facets=facets, row_multiple=4)
    assert padded.item_embedding.table_rows == 32 and tuple(padded.item_embedding.item_embeddings.shape) == (32, 8)
    table = np.random.default_rng(0).normal(size=(V + 1, 8)).astype("float32")
    for model in (plain, padded):
        model.set_item_embeddings(table)
    ids = _histories()
    np.testing.assert_allclose(padded.scorer().predict_on_batch(ids)["scores"],
                               plain.scorer().predict_on_batch(ids)["scores"], rtol=1e-6, atol=1e-6)
    rows = np.random.default_rng(1).normal(size=(3, 8)).astype("float32")
    grown = [m.with_new_items(rows, item_facets=[np.array([1, 2, 0]), np.array([3, 0, 1])]) for m in (plain, padded)]
    assert grown[1].item_embedding.table_rows == 36
    np.testing.assert_allclose(np.asarray(grown[1].item_embedding.item_table()),
                               np.asarray(grown[0].item_embedding.item_table()), rtol=1e-6, atol=1e-6)


def test_facet_attention_trains_transplants_and_round_trips(tmp_path):
    facets = _facets()
    keras.utils.set_random_seed(3)
    sasrec = SASRec(V, hidden_dim=8, num_heads=2, max_len=6, item_facets=facets, facet_attention=True)
    ids, targets = _histories(), _histories(seed=2)
    sasrec.compile()
    sasrec.fit(ids, targets, epochs=2, verbose=0)
    keys = sasrec.transformer_blocks[0].attention.facet_key_kernels
    assert len(keys) == 2 and np.abs(np.asarray(keys[0])).sum() > 0  # the facet keys learnt from zero
    fame = FAME.from_sasrec(sasrec, num_heads=2, num_experts=2)
    assert fame.facet_attention and fame.moe_block.attention.facet_dims == (4, 4)
    np.testing.assert_array_equal(np.asarray(fame.moe_block.attention.facet_key_kernels[1]),
                                  np.asarray(sasrec.transformer_blocks[-1].attention.facet_key_kernels[1]))
    fame.compile()
    fame.fit(ids, targets, epochs=1, verbose=0)
    fame.save(tmp_path / "fame.keras")
    again = keras.saving.load_model(tmp_path / "fame.keras", safe_mode=True)
    np.testing.assert_allclose(again.predict_on_batch(ids), fame.predict_on_batch(ids), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="facet_attention=True attends by the items' facets"):
        SASRec(V, hidden_dim=8, max_len=6, facet_attention=True)
