"""The routing loss: FAME's heads as experts whose own softmaxes the gate mixes (`mixture_routing_loss`)."""

import keras
import numpy as np
import pytest

from keras_fame import FAME, SASRec
from keras_fame.losses import MaskedSoftmaxCrossEntropy, SampledSoftmaxCrossEntropy, mixture_routing_loss
from keras_fame.training import AllPositionsTrainer, SampledSoftmaxTrainer

V = 30


def _fame():
    keras.utils.set_random_seed(3)
    return FAME(V, hidden_dim=8, num_heads=2, num_experts=2, max_len=6, dropout=0.0)


def _histories(seed=1):
    return np.random.default_rng(seed).integers(1, V + 1, size=(5, 6)).astype("int32")


def _log_softmax(logits):
    logits = logits - logits.max(-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def _numpy_routing(gates, head_scores, targets):
    """-log sum_h g_h softmax(head_scores_h)[target], mean over targets > 0 (padding column left out)."""
    log_p = _log_softmax(head_scores[..., 1:])  # [users, H, V]: item 0 is never a candidate
    target_log_p = np.take_along_axis(log_p, np.broadcast_to((targets - 1)[:, None, None], (*log_p.shape[:2], 1)), -1)
    per_user = -np.log((gates * np.exp(target_log_p[..., 0])).sum(-1))
    return per_user[targets > 0].mean()


def test_routing_loss_equals_the_numpy_mixture_likelihood(last_position_loss):
    model = _fame()
    weight = 0.7
    ids = _histories()
    # One padding target (0): left out of both losses.
    loss, targets = last_position_loss(model, ids, [3, 9, 0, 21, 30], routing_loss_weight=weight)

    out = model.scorer(explain=True).predict_on_batch(ids)
    y = targets[:, -1]
    scores = np.asarray(out["scores"])
    rec = -np.take_along_axis(_log_softmax(scores[:, 1:]), (y - 1)[:, None], -1)[y > 0, 0].mean()
    route = _numpy_routing(np.asarray(out["head_weights"]), np.asarray(out["head_scores"]), y)
    np.testing.assert_allclose(loss, rec + weight * route, rtol=1e-4)


def test_the_sampled_routing_loss_with_every_item_as_candidate_is_the_full_one():
    model = _fame()
    ids = _histories()
    targets = np.roll(ids, -1, axis=1)
    targets[0, :3] = 0
    full = AllPositionsTrainer(model, routing_loss_weight=1.0)
    full.compile(optimizer=keras.optimizers.SGD(0.0), loss=MaskedSoftmaxCrossEntropy())
    sampled = SampledSoftmaxTrainer(model, routing_loss_weight=1.0)
    sampled.compile(optimizer=keras.optimizers.SGD(0.0), loss=SampledSoftmaxCrossEntropy())
    inputs = {
        "item_ids": ids, "targets": targets, "candidates": np.arange(1, V + 1, dtype="int32"),
        "candidate_log_q": np.zeros(V, "float32"), "target_log_q": np.zeros(targets.shape, "float32"),
    }
    assert float(sampled.test_on_batch(inputs, targets)) == pytest.approx(float(full.test_on_batch(ids, targets)),
                                                                         rel=1e-5)


def test_its_gradient_moves_the_gate_to_the_heads_responsibilities():
    """d L / d gate logit_h = g_h - r_h, with r_h = g_h p_h / sum_k g_k p_k (the posterior responsibility)."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 3))
    log_p = np.log(rng.uniform(0.01, 1.0, size=(4, 3)))
    targets = np.array([[1, 2, 3, 4]])

    def loss(gate_logits):
        gates = np.exp(gate_logits) / np.exp(gate_logits).sum(-1, keepdims=True)
        return float(mixture_routing_loss(log_p[None], gates[None], targets))

    gates = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    responsibility = gates * np.exp(log_p) / (gates * np.exp(log_p)).sum(-1, keepdims=True)
    step = 1e-3
    numeric = np.zeros_like(logits)
    for index in np.ndindex(*logits.shape):
        up, down = logits.copy(), logits.copy()
        up[index] += step
        down[index] -= step
        numeric[index] = (loss(up) - loss(down)) / (2 * step)
    np.testing.assert_allclose(numeric, (gates - responsibility) / len(logits), atol=2e-4)


def test_off_it_is_todays_training_and_it_needs_a_gate():
    model = _fame()
    ids = _histories()
    np.testing.assert_allclose(np.asarray(AllPositionsTrainer(model, routing_loss_weight=0.0)(ids)),
                               np.asarray(model(ids)), rtol=1e-5, atol=1e-5)
    out = AllPositionsTrainer(model, routing_loss_weight=0.5)(ids)
    assert tuple(out["head_logits"].shape) == (5, 6, 2, V + 1) and tuple(out["gates"].shape) == (5, 6, 2)
    with pytest.raises(ValueError, match="routing_loss_weight > 0 needs a gated head"):
        AllPositionsTrainer(SASRec(V, hidden_dim=8, max_len=6), routing_loss_weight=0.5)
    with pytest.raises(ValueError, match="routing_loss_weight=-1"):
        AllPositionsTrainer(model, routing_loss_weight=-1)
