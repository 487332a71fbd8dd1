"""Item tables from text: the start, the frozen content + ID offset, cold items, new items."""

import os

import keras
import numpy as np
import pytest

from keras_fame import FAME, SASRec
from keras_fame.data import from_lists, leave_one_out
from keras_fame.data.cold_start import hold_out_items, popularity_scores, remove_items, split_by_target
from keras_fame.losses import MaskedSoftmaxCrossEntropy

NUM_ITEMS, D = 30, 8


def _table(seed=0):
    table = np.random.default_rng(seed).normal(scale=0.02, size=(NUM_ITEMS + 1, D)).astype("float32")
    table[0] = 5.0  # the padding row must be zeroed by set_item_embeddings
    return table


def test_item_embeddings_start_the_trainable_table():
    model = SASRec(NUM_ITEMS, hidden_dim=D, max_len=5, item_embeddings=_table())
    got = np.asarray(model.item_embedding.item_embeddings)
    assert np.abs(got[0]).sum() == 0
    np.testing.assert_array_equal(got[1:], _table()[1:])
    with pytest.raises(ValueError, match="expected"):
        model.set_item_embeddings(np.zeros((NUM_ITEMS, D)))
    with pytest.raises(ValueError, match="item_content=True"):
        model.set_item_embeddings(_table(), frozen=True)
    with pytest.raises(ValueError, match="non-finite"):
        model.set_item_embeddings(np.full((NUM_ITEMS + 1, D), np.nan))


def test_frozen_content_plus_offset_trains_only_the_offset_and_round_trips(tmp_path):
    model = SASRec(NUM_ITEMS, hidden_dim=D, max_len=5, item_content=True, item_embeddings=_table())
    layer = model.item_embedding
    assert np.abs(np.asarray(layer.item_embeddings)).sum() == 0  # offsets start at 0
    np.testing.assert_array_equal(np.asarray(layer.item_table())[1:], _table()[1:])
    assert layer.content_embeddings.path not in [v.path for v in model.trainable_variables]
    rng = np.random.default_rng(0)
    x = rng.integers(1, NUM_ITEMS + 1, (16, 5)).astype("int32")
    model.compile()
    model.fit(x, np.roll(x, -1, axis=1), epochs=2, verbose=0)
    np.testing.assert_array_equal(np.asarray(layer.content_embeddings)[1:], _table()[1:])
    assert np.abs(np.asarray(layer.item_embeddings)).sum() > 0
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert restored.item_embedding.item_content
    np.testing.assert_allclose(restored.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-5, atol=1e-5)
    fame = FAME.from_sasrec(model, num_heads=2, num_experts=2)
    np.testing.assert_array_equal(np.asarray(fame.item_embedding.item_table()), np.asarray(layer.item_table()))


def test_excluded_items_loss_equals_softmax_without_their_columns():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 7)).astype("float32")
    targets = np.array([[1, 2, 0], [3, 6, 1]])
    got = float(MaskedSoftmaxCrossEntropy(excluded_items=[4, 5])(targets, logits))
    kept = [0, 1, 2, 3, 6]
    sub = logits[..., kept]
    log_softmax = sub - np.log(np.exp(sub).sum(-1, keepdims=True))
    positions = [(b, t) for b in range(2) for t in range(3) if targets[b, t] > 0]
    expected = -np.mean([log_softmax[b, t, kept.index(targets[b, t])] for b, t in positions])
    assert got == pytest.approx(expected, rel=1e-5)
    assert MaskedSoftmaxCrossEntropy.from_config(MaskedSoftmaxCrossEntropy([5, 4]).get_config()).excluded_items == [4, 5]


def _cold_setup(seed=0):
    rng = np.random.default_rng(seed)
    sequences = [list(rng.choice(np.arange(1, NUM_ITEMS + 1), size=rng.integers(4, 9), replace=False)) for _ in range(80)]
    data = from_lists(sequences, num_items=NUM_ITEMS)
    hidden = hold_out_items(NUM_ITEMS, 0.1, seed=seed)
    return data, hidden, remove_items(data, hidden)


def test_remove_items_keeps_held_out_items_only_as_test_targets():
    data, hidden, kept = _cold_setup()
    assert len(hidden) == 3 and kept.num_items == NUM_ITEMS
    split = leave_one_out(kept, max_len=6)
    for array in (split.train_inputs, split.train_targets, split.validation.targets, split.validation.inputs, split.test.inputs):
        assert not np.isin(array, hidden).any()
    cold, warm = split_by_target(split.test, hidden)
    assert len(cold) > 0 and len(cold) + len(warm) == len(split.test)
    assert np.isin(split.test.targets[cold], hidden).all()
    # Every kept user's sequence is its original one without the hidden items but the last.
    originals = {int(u): data.sequence(i).tolist() for i, u in enumerate(data.user_ids)}
    for i, u in enumerate(kept.user_ids):
        original = originals[int(u)]
        assert kept.sequence(i).tolist() == [v for v in original[:-1] if v not in hidden] + original[-1:]
    assert np.all(popularity_scores(split)[hidden] == 0)


def test_cold_items_keep_offset_zero_and_are_ranked_from_their_content():
    _, hidden, kept = _cold_setup()
    split = leave_one_out(kept, max_len=6)
    model = SASRec(NUM_ITEMS, hidden_dim=D, max_len=6, item_content=True, item_embeddings=_table())
    model.compile(loss=MaskedSoftmaxCrossEntropy(excluded_items=hidden.tolist()))
    model.fit(split.train_inputs, split.train_targets, epochs=3, verbose=0)
    offsets = np.asarray(model.item_embedding.item_embeddings)
    assert np.abs(offsets[hidden]).sum() == 0
    warm = np.setdiff1d(np.arange(1, NUM_ITEMS + 1), hidden)
    assert (np.abs(offsets[warm]).sum(axis=1) > 0).all()
    np.testing.assert_array_equal(np.asarray(model.item_embedding.item_table())[hidden], _table()[hidden])


def test_new_items_from_content_appear_in_recommend_and_in_the_export(tmp_path):
    keras.utils.set_random_seed(3)
    model = FAME(NUM_ITEMS, hidden_dim=D, num_heads=2, num_experts=2, max_len=6, item_content=True, item_embeddings=_table())
    history = [3, 7, 11]
    before = model.recommend([history], k=5)
    # A new item whose content equals what the model would score highest: it must come first.
    scorer = model.scorer()
    table = np.asarray(model.item_embedding.item_table())
    best = int(before["item_ids"][0, 0])
    new_rows = np.stack([table[best] * 3.0, -table[best]])
    grown = model.with_new_items(new_rows)
    assert grown.num_items == NUM_ITEMS + 2 and grown.get_config()["item_content"]
    offsets = np.asarray(grown.item_embedding.item_embeddings)
    assert np.abs(offsets[NUM_ITEMS + 1 :]).sum() == 0
    after = grown.recommend([history], k=5)
    assert after["item_ids"][0, 0] == NUM_ITEMS + 1
    # The old items score exactly as before.
    old = np.asarray(scorer.predict_on_batch(np.array([[0, 0, 0] + history], "int32"))["scores"])
    new = np.asarray(grown.scorer().predict_on_batch(np.array([[0, 0, 0] + history], "int32"))["scores"])
    np.testing.assert_allclose(new[:, : NUM_ITEMS + 1], old, rtol=1e-5, atol=1e-6)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        from keras_fame.export import export_saved_model

        path = export_saved_model(grown, str(tmp_path / "serving"), k=5)
        served = tf.saved_model.load(path).signatures["serving_default"](item_ids=tf.constant([history], tf.int32))
        np.testing.assert_array_equal(served["item_ids"].numpy(), after["item_ids"])
    with pytest.raises(ValueError, match="content_rows"):
        model.with_new_items(np.zeros((2, D + 1)))


def test_offset_max_norm_bounds_every_offset_row():
    model = SASRec(NUM_ITEMS, hidden_dim=D, max_len=5, item_content=True, item_embeddings=_table(), offset_max_norm=0.05)
    layer = model.item_embedding
    offsets = np.random.default_rng(1).normal(scale=0.2, size=(NUM_ITEMS + 1, D)).astype("float32")
    offsets[3] = 0.01  # a small row is left as it is
    layer.item_embeddings.assign(offsets)
    effective = np.asarray(layer.item_table()) - np.asarray(layer.content_embeddings)
    norms = np.linalg.norm(effective, axis=1)
    assert norms.max() == pytest.approx(0.05, rel=1e-4)
    np.testing.assert_allclose(effective[3], offsets[3], rtol=1e-6)
    big = np.linalg.norm(offsets, axis=1) > 0.05
    np.testing.assert_allclose(effective[big] / norms[big, None], offsets[big] / np.linalg.norm(offsets[big], axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    x = np.random.default_rng(0).integers(1, NUM_ITEMS + 1, (8, 5)).astype("int32")
    model.compile()
    model.fit(x, np.roll(x, -1, axis=1), epochs=1, verbose=0)  # trains through the bound
    assert FAME.from_sasrec(model, num_heads=2, num_experts=2).item_embedding.offset_max_norm == 0.05
    with pytest.raises(ValueError, match="offset_max_norm"):
        SASRec(NUM_ITEMS, hidden_dim=D, max_len=5, offset_max_norm=0.05)


def test_offset_dropout_drops_whole_offset_rows_in_training_only(tmp_path):
    model = SASRec(NUM_ITEMS, hidden_dim=D, max_len=5, item_content=True, item_embeddings=_table(), offset_dropout=0.5)
    layer = model.item_embedding
    offsets = np.random.default_rng(1).normal(scale=0.2, size=(NUM_ITEMS + 1, D)).astype("float32") + 1.0
    layer.item_embeddings.assign(offsets)
    content = np.asarray(layer.content_embeddings)
    np.testing.assert_allclose(np.asarray(layer.item_table()), content + offsets, rtol=1e-6)  # inference: all offsets
    kept = []
    for _ in range(20):
        effective = np.asarray(layer.item_table(training=True)) - content
        dropped = np.all(np.abs(effective) < 1e-6, axis=1)
        whole = np.all(np.abs(effective - offsets) < 1e-5, axis=1)
        assert np.all(dropped | whole), "an offset row is either dropped whole or kept whole"
        kept.append(whole[1:].mean())
    assert 0.35 < np.mean(kept) < 0.65  # about half of 30 items x 20 draws
    assert np.std(kept) > 0  # a fresh draw at every call
    # The dropped table is the one the scores use: train a step, save, reload.
    x = np.random.default_rng(0).integers(1, NUM_ITEMS + 1, (8, 5)).astype("int32")
    model.compile()
    model.fit(x, np.roll(x, -1, axis=1), epochs=1, verbose=0)
    np.testing.assert_array_equal(np.asarray(layer.content_embeddings), content)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.item_embedding.offset_dropout == 0.5
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert FAME.from_sasrec(model, num_heads=2, num_experts=2).item_embedding.offset_dropout == 0.5
    for bad in (dict(offset_dropout=0.5), dict(item_content=True, offset_dropout=1.0)):
        with pytest.raises(ValueError, match="offset_dropout"):
            SASRec(NUM_ITEMS, hidden_dim=D, max_len=5, **bad)


def test_learned_content_scale_multiplies_the_content_and_trains(tmp_path):
    model = SASRec(NUM_ITEMS, hidden_dim=D, max_len=5, item_content=True, item_embeddings=_table(),
                   offset_dropout=0.5, learn_content_scale=True)
    layer = model.item_embedding
    content = np.asarray(layer.content_embeddings)
    layer.content_scale.assign(3.0)
    np.testing.assert_allclose(np.asarray(layer.item_table()), 3.0 * content, rtol=1e-6)  # offsets start at 0
    x = np.random.default_rng(0).integers(1, NUM_ITEMS + 1, (16, 5)).astype("int32")
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    model.fit(x, np.roll(x, -1, axis=1), epochs=2, verbose=0)
    assert float(np.asarray(layer.content_scale)) != 3.0  # it is trained
    np.testing.assert_array_equal(np.asarray(layer.content_embeddings), content)  # the content is not
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    fame = FAME.from_sasrec(model, num_heads=2, num_experts=2)
    assert float(np.asarray(fame.item_embedding.content_scale)) == float(np.asarray(layer.content_scale))
    with pytest.raises(ValueError, match="learn_content_scale"):
        SASRec(NUM_ITEMS, hidden_dim=D, max_len=5, learn_content_scale=True)


def _brute_force_neighbour_offsets(content, effective, queries, donors, k):
    """The imputation written out one query at a time (the reference for `impute_offsets`)."""
    out = []
    for q in queries:
        sims = [float(content[q] @ content[j] / (np.linalg.norm(content[q]) * np.linalg.norm(content[j]))) for j in donors]
        order = sorted(range(len(donors)), key=lambda i: -sims[i])[:k]
        w = np.array([max(sims[i], 0.0) for i in order])
        w = w / w.sum() if w.sum() > 0 else np.full(k, 1.0 / k)
        out.append(sum(wi * effective[donors[i]] for wi, i in zip(w, order)))
    return np.array(out)


@pytest.mark.parametrize("bound", [None, 0.05])
def test_impute_offsets_equals_the_brute_force_mean_of_the_nearest_donors(bound):
    model = SASRec(NUM_ITEMS, hidden_dim=D, max_len=5, item_content=True, item_embeddings=_table(), offset_max_norm=bound,
                   learn_content_scale=True)
    layer = model.item_embedding
    layer.content_scale.assign(2.0)
    offsets = np.random.default_rng(1).normal(scale=0.1, size=(NUM_ITEMS + 1, D)).astype("float32")
    cold = np.array([4, 9, 17])
    offsets[0] = 0.0
    offsets[cold] = 0.0  # never trained
    layer.item_embeddings.assign(offsets)
    content = np.asarray(layer.content_embeddings)
    effective = np.asarray(layer.item_table()) - 2.0 * content  # the bounded offsets
    donors = np.setdiff1d(np.arange(1, NUM_ITEMS + 1), cold)
    expected = _brute_force_neighbour_offsets(content, effective, cold, donors, k=4)
    before = np.asarray(layer.item_table())
    got = model.impute_offsets(cold, neighbours=4, chunk_size=2)  # chunks of 2 queries: the chunking is exercised
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    after = np.asarray(layer.item_table())
    np.testing.assert_allclose(after[cold] - 2.0 * content[cold], expected, rtol=1e-5, atol=1e-7)
    others = np.setdiff1d(np.arange(NUM_ITEMS + 1), cold)
    np.testing.assert_array_equal(after[others], before[others])
    np.testing.assert_array_equal(np.asarray(layer.content_embeddings), content)
    # No positive similarity among the k nearest: the plain mean.
    layer.item_embeddings.assign(offsets)
    content_neg = content.copy()
    content_neg[1:] = np.abs(content_neg[1:])
    content_neg[4] = -np.abs(content[4]) - 0.01
    layer.content_embeddings.assign(content_neg)
    effective = np.asarray(layer.item_table()) - 2.0 * content_neg
    got = model.impute_offsets([4], neighbours=3, donors=donors)
    np.testing.assert_allclose(got[0], _brute_force_neighbour_offsets(content_neg, effective, [4], donors, 3)[0], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="ids in 1.."):
        model.impute_offsets([0])
    with pytest.raises(ValueError, match="item_content=True"):
        SASRec(NUM_ITEMS, hidden_dim=D, max_len=5).impute_offsets([1])


def test_new_items_can_borrow_their_neighbours_offsets():
    model = SASRec(NUM_ITEMS, hidden_dim=D, max_len=5, item_content=True, item_embeddings=_table())
    layer = model.item_embedding
    offsets = np.random.default_rng(2).normal(scale=0.1, size=(NUM_ITEMS + 1, D)).astype("float32")
    offsets[0] = 0.0
    offsets[5] = 0.0  # an untrained catalog item is no donor
    layer.item_embeddings.assign(offsets)
    content = np.asarray(layer.content_embeddings)
    new_rows = np.stack([content[7] + 1e-3, -content[2]])
    grown = model.with_new_items(new_rows, offsets="neighbours", neighbours=3)
    donors = np.setdiff1d(np.arange(1, NUM_ITEMS + 1), [5])
    full_content = np.concatenate([content, new_rows])
    full_effective = np.concatenate([offsets, np.zeros_like(new_rows)])
    expected = _brute_force_neighbour_offsets(full_content, full_effective, [NUM_ITEMS + 1, NUM_ITEMS + 2], donors, 3)
    got = np.asarray(grown.item_embedding.item_embeddings)
    np.testing.assert_allclose(got[NUM_ITEMS + 1 :], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(got[: NUM_ITEMS + 1], offsets)
    explicit = model.with_new_items(new_rows, offsets=np.ones_like(new_rows))
    np.testing.assert_array_equal(np.asarray(explicit.item_embedding.item_embeddings)[NUM_ITEMS + 1 :], 1.0)
    with pytest.raises(ValueError, match="offsets"):
        model.with_new_items(new_rows, offsets="nearest")
    with pytest.raises(ValueError, match="shape"):
        model.with_new_items(new_rows, offsets=np.ones((1, D)))
    with pytest.raises(ValueError, match="plain item table"):
        SASRec(NUM_ITEMS, hidden_dim=D, max_len=5).with_new_items(new_rows, offsets="neighbours")
