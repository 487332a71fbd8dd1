"""FAME(gate_facets=True): the gate also reads the history's facet agreement (ItemEmbedding.facet_agreement)."""

import keras
import numpy as np
import pytest

from keras_fame import FAME, SASRec
from keras_fame.layers import FacetGatedHead
from keras_fame.losses import MaskedSoftmaxCrossEntropy, SampledSoftmaxCrossEntropy
from keras_fame.training import AllPositionsTrainer, LastPositionTrainer, SampledSoftmaxTrainer

V = 30


def _facets():
    rng = np.random.default_rng(0)
    facets = [rng.integers(0, 4, V + 1).astype("int32"), rng.integers(0, 3, V + 1).astype("int32")]
    for labels in facets:
        labels[0] = 0
    return facets


def _fame(**kwargs):
    keras.utils.set_random_seed(3)
    return FAME(V, hidden_dim=8, num_heads=2, num_experts=2, max_len=6, dropout=0.0, item_facets=_facets(), **kwargs)


def _histories():
    ids = np.random.default_rng(1).integers(1, V + 1, size=(5, 6)).astype("int32")
    ids[0, :3] = 0  # a short history, left-padded
    return ids


def _numpy_agreement(ids, facets):
    out = np.zeros(ids.shape + (len(facets),))
    for b, row in enumerate(ids):
        for t in range(len(row)):
            earlier = [j for j in range(t) if row[j] > 0]
            for k, labels in enumerate(facets):
                label = labels[row[t]]
                if label > 0 and earlier:
                    out[b, t, k] = sum(labels[row[j]] == label for j in earlier) / len(earlier)
    return out


def _copy_weights(source, target):
    """Every weight of `source` into the variable of the same path in `target` (which may have more)."""
    by_path = {v.path: v for v in target.weights}
    for variable in source.weights:
        by_path[variable.path].assign(variable)


def test_agreement_equals_a_numpy_count():
    model = _fame(gate_facets=True)
    ids = _histories()
    ids[1] = [4, 4, 9, 4, 17, 4]  # repeats: agreement 1 in every facet where item 4 has a label
    got = np.asarray(model.item_embedding.facet_agreement(ids))
    np.testing.assert_allclose(got, _numpy_agreement(ids, _facets()), rtol=1e-6, atol=1e-7)
    assert got[0, :4].max() == 0  # padding and the first real item: nothing before them


def test_with_the_context_kernel_at_zero_the_model_is_todays_fame():
    plain, gated = _fame(), _fame(gate_facets=True)
    _copy_weights(plain, gated)
    assert not np.asarray(gated.facet_head.gate_context_kernel).any()  # starts at zero
    ids = _histories()
    np.testing.assert_array_equal(np.asarray(gated(ids)), np.asarray(plain(ids)))
    assert len(gated.weights) == len(plain.weights) + 1


def test_the_gate_adds_agreement_times_its_kernel_to_the_logits():
    model = _fame(gate_facets=True)
    kernel = np.array([[2.0, -1.0], [-0.5, 1.5]], "float32")  # [K, H]
    model.facet_head.gate_context_kernel.assign(kernel)
    ids = _histories()
    features = keras.Model(model.inputs, model._head_wiring[0][0])(ids)[:, -1]  # [users, H, d']
    head = model.facet_head
    facets = np.asarray(head.facets(features)).reshape(len(ids), -1)
    logits = facets @ np.asarray(head.gate_kernel).reshape(-1, 2) + np.asarray(head.gate_bias)
    logits += _numpy_agreement(ids, _facets())[:, -1] @ kernel
    want = np.exp(logits - logits.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    got = model.scorer().predict_on_batch(ids)["head_weights"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # The ranker and the export read the same gate.
    np.testing.assert_allclose(model.recommend(ids, k=3)["head_weights"], want, rtol=1e-4, atol=1e-6)


def test_relabelling_an_earlier_item_moves_the_gate_logits_by_the_kernel_times_the_agreement_change():
    model = _fame(gate_facets=True)
    kernel = np.array([[3.0, -3.0], [0.0, 0.0]], "float32")
    model.facet_head.gate_context_kernel.assign(kernel)
    brand = model.item_embedding.facet_embeddings[0]
    rows = np.asarray(brand)
    rows[2] = rows[1]  # brands 1 and 2 embed alike: relabelling changes no item row, only the agreement
    brand.assign(rows)
    facets = _facets()
    facets[0][1:7] = [3, 2, 3, 3, 3, 1]  # item 6 (newest) has brand 1, none before it
    ids = np.array([[1, 2, 3, 4, 5, 6]], "int32")

    def logit_gap():
        model.item_embedding.set_item_facets(facets)
        gates = model.scorer().predict_on_batch(ids)["head_weights"][0]
        return np.log(gates[0] / gates[1])

    before = logit_gap()
    facets[0][2] = 1  # item 2 now shares item 6's brand: brand agreement 0 -> 1/5
    np.testing.assert_allclose(logit_gap() - before, (kernel[0, 0] - kernel[0, 1]) / 5, rtol=1e-4)


def test_round_trips_transplants_and_trains_with_every_trainer(tmp_path):
    ids = _histories()
    keras.utils.set_random_seed(0)
    sasrec = SASRec(V, hidden_dim=8, num_heads=2, max_len=6, item_facets=_facets())
    fame = FAME.from_sasrec(sasrec, num_experts=2, gate_facets=True)
    assert fame.gate_facets and fame.facet_head.gate_context_dim == 2
    fame.facet_head.gate_context_kernel.assign(np.ones((2, 2), "float32") * [[1.0, -1.0]])
    path = str(tmp_path / "fame.keras")
    fame.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded(ids)), np.asarray(fame(ids)))
    np.testing.assert_array_equal(loaded.recommend(ids, k=4)["item_ids"], fame.recommend(ids, k=4)["item_ids"])
    targets = np.roll(ids, -1, axis=1)
    targets[0, :3] = 0
    for trainer in (AllPositionsTrainer(fame, routing_loss_weight=0.5), LastPositionTrainer(fame, facet_loss_weight=1.0)):
        trainer.compile(optimizer="adam", loss=MaskedSoftmaxCrossEntropy())
        history = trainer.fit(ids, targets, epochs=2, verbose=0)
        assert np.isfinite(history.history["loss"]).all()
    sampled = SampledSoftmaxTrainer(fame)
    sampled.compile(optimizer="adam", loss=SampledSoftmaxCrossEntropy())
    inputs = {
        "item_ids": ids, "targets": targets, "candidates": np.arange(1, 9, dtype="int32"),
        "candidate_log_q": np.zeros(8, "float32"), "target_log_q": np.zeros(targets.shape, "float32"),
    }
    assert np.isfinite(float(sampled.train_on_batch(inputs, targets)))
    assert np.asarray(fame.facet_head.gate_context_kernel).std() > 0  # learnt by the trainers


def test_gate_facets_needs_facets_and_the_head_its_pair():
    with pytest.raises(ValueError, match="gate_facets=True .* give item_facets"):
        FAME(V, hidden_dim=8, num_heads=2, num_experts=2, max_len=6, gate_facets=True)
    with pytest.raises(ValueError, match="gate_facets='yes'"):
        _fame(gate_facets="yes")
    with pytest.raises(ValueError, match="gate_context_dim=-1"):
        FacetGatedHead(num_heads=2, head_dim=4, gate_context_dim=-1)
    head = FacetGatedHead(num_heads=2, head_dim=4, gate_context_dim=2)
    with pytest.raises(ValueError, match="call it on the pair"):
        head(np.ones((3, 2, 4), "float32"), np.ones((11, 8), "float32"))


def test_new_items_keep_the_learnt_facet_gate():
    model = _fame(gate_facets=True)
    kernel = np.array([[1.0, -2.0], [0.5, 0.0]], "float32")
    model.facet_head.gate_context_kernel.assign(kernel)
    grown = model.with_new_items(np.zeros((2, 8), "float32"), item_facets=[np.array([1, 0]), np.array([2, 0])])
    np.testing.assert_array_equal(np.asarray(grown.facet_head.gate_context_kernel), kernel)
    ids = _histories()  # old items only: the same gates
    np.testing.assert_allclose(grown.scorer().predict_on_batch(ids)["head_weights"],
                               model.scorer().predict_on_batch(ids)["head_weights"], rtol=1e-5, atol=1e-7)
