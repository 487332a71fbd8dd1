import os

import keras
import numpy as np
import pytest

from keras_fame.pretraining import (
    FacetBatches,
    FacetContrastivePretrainer,
    nearest_neighbour_agreement,
    pca_item_table,
    pretrain_item_embeddings,
    supervised_contrastive_loss,
)


def supcon_brute_force(z, labels, temperature):
    """Khosla et al. (2020) Eq. 2, one anchor and one positive at a time."""
    total, anchors = 0.0, 0
    for i in range(len(z)):
        if labels[i] < 0:
            continue
        others = [a for a in range(len(z)) if a != i and labels[a] >= 0]
        positives = [p for p in others if labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(np.exp(z[i] @ z[a] / temperature) for a in others)
        total += -np.mean([np.log(np.exp(z[i] @ z[p] / temperature) / denominator) for p in positives])
        anchors += 1
    return total / anchors if anchors else 0.0


def _unit(rng, n, dim):
    z = rng.normal(size=(n, dim))
    return z / np.linalg.norm(z, axis=1, keepdims=True)


@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 0, 1, 3], [0, -1, 0, 1, -1, 1, 2, 2], [0, 1, 2, 3, 4, 5, 6, 7]])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_supcon_equals_brute_force(labels, temperature):
    z = _unit(np.random.default_rng(len(labels) + int(temperature * 10)), len(labels), 5)
    got = float(supervised_contrastive_loss(z.astype("float32"), np.array(labels), temperature))
    assert got == pytest.approx(supcon_brute_force(z, labels, temperature), rel=1e-5, abs=1e-6)
    if len(set(labels)) == len(labels):
        assert got == 0.0  # no anchor has a positive


def _toy_problem(seed=0, num_items=120, text_dim=12):
    """Two facets, each readable from its own block of the text features."""
    rng = np.random.default_rng(seed)
    labels = np.full((num_items + 1, 2), -1)
    labels[1:, 0] = rng.integers(0, 6, num_items)
    labels[1:, 1] = rng.integers(0, 5, num_items)
    labels[3, 0] = -1  # no brand: left out of that facet
    centres = rng.normal(size=(2, 6, text_dim // 2)) * 2
    features = np.zeros((num_items + 1, text_dim), "float32")
    for h in range(2):
        lab = np.maximum(labels[1:, h], 0)
        features[1:, h * text_dim // 2 : (h + 1) * text_dim // 2] = centres[h, lab] + rng.normal(size=(num_items, text_dim // 2))
    return features, labels


def test_facet_batches_alternate_and_hold_positives():
    features, labels = _toy_problem()
    batches = FacetBatches(features, labels, batch_size=32, samples_per_label=4, seed=0)
    assert len(batches) == 2 * int(np.ceil(120 / 32))
    for t in range(4):
        x, y = batches[t]
        facet = t % 2
        assert (x["facet"] == facet).all()
        np.testing.assert_array_equal(y, labels[_rows_of(x["text"], features), facet])
        assert (y >= 0).all()  # unlabelled items are never drawn for that facet
        _, counts = np.unique(y, return_counts=True)
        assert (counts >= 2).all()  # every anchor has a positive
    again = FacetBatches(features, labels, batch_size=32, seed=0)[1]
    np.testing.assert_array_equal(again[0]["text"], batches[1][0]["text"])


def _rows_of(texts, features):
    return [int(np.flatnonzero((features == row).all(axis=1))[0]) for row in texts]


def test_a_step_for_facet_k_changes_head_k_only():
    features, labels = _toy_problem()
    model = FacetContrastivePretrainer(num_heads=2, head_dim=4, head_hidden_dim=8)
    model.adapt(features[1:])
    model.compile()
    batches = FacetBatches(features, labels, batch_size=32, seed=0)
    model.train_on_batch(*batches[0])  # facet 0, so head 0 has non-zero Adam moments
    model.train_on_batch(*batches[1])
    for t in (2, 3):
        facet = t % 2
        before = {v.path: np.array(v) for v in model.trainable_variables}
        model.train_on_batch(*batches[t])
        for v in model.trainable_variables:
            changed = not np.array_equal(before[v.path], np.array(v))
            assert changed == (f"head_{facet}_" in v.path), v.path


def test_pretraining_organises_each_head_by_its_facet():
    features, labels = _toy_problem()
    table, report = pretrain_item_embeddings(features[1:], labels, hidden_dim=8, epochs=8, batch_size=32, verbose=0, head_hidden_dim=16)
    assert table.shape == (121, 8) and np.abs(table[0]).sum() == 0
    assert np.sqrt(np.mean(table[1:] ** 2)) == pytest.approx(0.02, rel=1e-3)  # the embedding initialiser's scale
    assert report["loss"][-1] < report["loss"][0]
    for h, facet in enumerate(("brand", "category_leaf")):
        agreement = report["nearest_neighbour_label_agreement"][f"head_{h}_{facet}"]
        assert agreement["own_head"] > agreement["all_heads"][1 - h] and agreement["own_head"] > 2 * agreement["chance"]


def test_pretrainer_config_and_keras_round_trip(tmp_path):
    features, labels = _toy_problem()
    model = FacetContrastivePretrainer(num_heads=2, head_dim=4, head_hidden_dim=8, head_layers=2, temperature=0.2)
    model.adapt(features[1:])
    model.compile()
    batches = FacetBatches(features, labels, batch_size=32, steps_per_epoch=4)
    first_epoch = batches[0][0]["text"].copy()
    model.fit(batches, epochs=2, verbose=0)
    assert batches.epoch >= 2  # Keras calls on_epoch_end: every epoch draws new batches
    assert not np.array_equal(batches[0][0]["text"], first_epoch)
    clone = FacetContrastivePretrainer.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    path = os.path.join(tmp_path, "pretrainer.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(restored.item_table(features), model.item_table(features), rtol=1e-5, atol=1e-7)
    out = np.asarray(model(features[:5]))
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, rtol=1e-5)


def test_pca_item_table_and_neighbour_agreement():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 10))
    table = pca_item_table(features, 4)
    centred = features - features.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:4].T
    expected *= 0.02 / np.sqrt(np.mean(expected**2))
    np.testing.assert_allclose(np.abs(table[1:]), np.abs(expected), rtol=1e-5, atol=1e-8)  # up to sign
    whitened = pca_item_table(features, 4, whiten=True)[1:]
    assert np.std(whitened, axis=0) == pytest.approx(np.full(4, np.std(whitened[:, 0])), rel=1e-6)
    with pytest.raises(ValueError):
        pca_item_table(features, 11)
    labels = np.array([-1] + [0] * 20 + [1] * 20)
    clustered = np.concatenate([np.zeros((1, 2)), np.repeat([[1.0, 0.0], [0.0, 1.0]], 20, axis=0)]) + rng.normal(scale=0.01, size=(41, 2))
    per_head, chance = nearest_neighbour_agreement(clustered, labels, 1)
    assert per_head == [1.0] and chance == pytest.approx(0.5)
