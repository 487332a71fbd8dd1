"""Sampled softmax: the loss against numpy, full softmax as its limit, log-Q, accidental hits, the samplers."""

import keras
import numpy as np
import pytest

import keras_fame
from keras_fame.data import TrainingBatches, leave_one_out
from keras_fame.data.synthetic import planted_facets
from keras_fame.data import SampledBatches
from keras_fame.losses import MaskedSoftmaxCrossEntropy, SampledSoftmaxCrossEntropy, sampled_logits
from keras_fame.training import SampledSoftmaxTrainer


def _numpy_loss(user, items, targets, candidates, cand_log_q, target_log_q):
    losses = []
    for b in range(targets.shape[0]):
        for t in range(targets.shape[1]):
            target = targets[b, t]
            if target == 0:
                continue
            logits = [user[b, t] @ items[target] - target_log_q[b, t]]
            for c, item in enumerate(candidates):
                if item != target and item != 0:  # accidental hits and padding are no negatives
                    logits.append(user[b, t] @ items[item] - cand_log_q[c])
            logits = np.array(logits, dtype=np.float64)
            losses.append(np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[0])
    return float(np.mean(losses))


def test_sampled_loss_equals_numpy_for_fixed_negatives_with_log_q_hits_and_padding():
    rng = np.random.default_rng(0)
    user = rng.normal(size=(3, 4, 5)).astype("float32")
    items = rng.normal(size=(10, 5)).astype("float32")
    targets = np.array([[0, 1, 2, 3], [0, 0, 4, 4], [5, 6, 7, 9]], "int32")
    candidates = np.array([4, 2, 8, 0, 4, 1], "int32")  # duplicates, a hit for several rows, a 0
    cand_log_q = np.log(rng.uniform(0.01, 0.5, size=6)).astype("float32")
    target_log_q = np.log(rng.uniform(0.01, 0.5, size=(3, 4))).astype("float32")
    logits = sampled_logits(user, items, targets, candidates, cand_log_q, target_log_q)
    got = float(SampledSoftmaxCrossEntropy()(targets, logits))
    assert got == pytest.approx(_numpy_loss(user, items, targets, candidates, cand_log_q, target_log_q), rel=1e-5)


def test_log_q_correction_shifts_each_logit_by_its_log_probability():
    rng = np.random.default_rng(1)
    user = rng.normal(size=(2, 3, 4)).astype("float32")
    items = rng.normal(size=(8, 4)).astype("float32")
    targets = np.array([[1, 2, 3], [4, 5, 6]], "int32")
    candidates = np.array([7, 1, 2], "int32")
    cand_log_q = np.log(np.array([0.5, 0.2, 0.1], "float32"))
    target_log_q = np.log(np.full((2, 3), 0.25, "float32"))
    plain = keras.ops.convert_to_numpy(sampled_logits(user, items, targets, candidates))
    corrected = keras.ops.convert_to_numpy(sampled_logits(user, items, targets, candidates, cand_log_q, target_log_q))
    unmasked = plain > -1e8
    diff = (corrected - plain)[unmasked]
    expected = np.concatenate([-target_log_q[..., None], np.broadcast_to(-cand_log_q, (2, 3, 3))], -1)[unmasked]
    np.testing.assert_allclose(diff, expected, rtol=1e-5)
    # The target is never its own negative: item 1 is masked in the row whose target is 1 only.
    assert corrected[0, 0, 2] < -1e8 and corrected[1, 0, 2] > -1e8


@pytest.mark.parametrize("kind", ["sasrec", "fame", "fame_facets"])
def test_all_items_as_candidates_is_the_full_softmax(kind):
    data, _ = planted_facets(num_users=60, seed=0)
    split = leave_one_out(data, max_len=10)
    keras.utils.set_random_seed(0)
    if kind == "sasrec":
        model = keras_fame.SASRec(data.num_items, hidden_dim=8, num_heads=2, max_len=10)
    else:  # with facets the sampled path fuses only the rows it reads (`ItemEmbedding.rows`)
        rng = np.random.default_rng(1)
        facets = [rng.integers(0, 4, data.num_items + 1), rng.integers(0, 6, data.num_items + 1)]
        model = keras_fame.FAME(data.num_items, hidden_dim=8, num_heads=2, num_experts=2, max_len=10,
                                item_facets=facets if kind == "fame_facets" else None)
    x, y = TrainingBatches(split.train_inputs, split.train_targets, 32)[0]
    full = float(MaskedSoftmaxCrossEntropy()(y, model(x, training=False)))
    inputs = {
        "item_ids": x, "targets": y, "candidates": np.arange(1, data.num_items + 1, dtype="int32"),
        "candidate_log_q": np.zeros(data.num_items, "float32"), "target_log_q": np.zeros(y.shape, "float32"),
    }
    sampled = float(SampledSoftmaxCrossEntropy()(y, SampledSoftmaxTrainer(model)(inputs, training=False)))
    assert sampled == pytest.approx(full, rel=1e-5)


def test_samplers_draw_reproducibly_and_as_specified():
    data, _ = planted_facets(num_users=200, seed=0)
    split = leave_one_out(data, max_len=10)
    batches = TrainingBatches(split.train_inputs, split.train_targets, 64, seed=0)
    uniform = SampledBatches(batches, data.num_items, num_negatives=50, sampler="uniform", seed=3)
    first = uniform[1][0]["candidates"]
    assert first.shape == (50,) and first.min() >= 1 and first.max() <= data.num_items
    np.testing.assert_array_equal(uniform[1][0]["candidates"], first)  # (seed, epoch, batch) decide
    np.testing.assert_allclose(uniform[1][0]["candidate_log_q"], np.log(1 / data.num_items), rtol=1e-6)
    in_batch = SampledBatches(batches, data.num_items, sampler="in_batch")
    x, y = in_batch[0]
    np.testing.assert_array_equal(x["candidates"], y.reshape(-1))
    counts = np.bincount(split.train_targets.ravel(), minlength=data.num_items + 1)
    popular = SampledBatches(batches, data.num_items, num_negatives=200_000, sampler="popularity", seed=0)
    drawn = np.bincount(popular[0][0]["candidates"], minlength=data.num_items + 1)[1:]
    expected = counts[1:] / counts[1:].sum()
    np.testing.assert_allclose(drawn / drawn.sum(), expected, atol=0.004)  # by training frequency
    np.testing.assert_allclose(np.exp(popular.log_q[1:]), expected, rtol=1e-6)
    # Mixed: the batch's cells, then the uniform draws; each candidate's log q is the mixture's.
    mixed = SampledBatches(batches, data.num_items, num_negatives=40, sampler="mixed", seed=3)
    x, y = mixed[1]
    cells = y.size
    np.testing.assert_array_equal(x["candidates"][:cells], y.reshape(-1))
    extra = x["candidates"][cells:]
    assert extra.shape == (40,) and extra.min() >= 1 and extra.max() <= data.num_items
    in_batch_count, p = np.count_nonzero(y), counts / counts[1:].sum()
    q = (in_batch_count * p + 40 / data.num_items) / (in_batch_count + 40)
    real = x["candidates"] > 0
    np.testing.assert_allclose(np.exp(x["candidate_log_q"][real]), q[x["candidates"][real]], rtol=1e-5)
    np.testing.assert_allclose(np.exp(x["target_log_q"][y > 0]), q[y[y > 0]], rtol=1e-5)
    with pytest.raises(ValueError, match="sampler"):
        SampledBatches(batches, data.num_items, sampler="hard")


@pytest.mark.parametrize("sampler, optimizer", [("uniform", "adam"), ("in_batch", "adam"), ("mixed", "adam"),
                                                ("uniform", "lazy_adam")])
def test_fit_with_a_sampled_softmax_learns(sampler, optimizer):
    from keras_fame.evaluation import evaluate_model
    from keras_fame.training import fit_with_early_stopping

    data, _ = planted_facets(num_users=300, seed=0)
    split = leave_one_out(data, max_len=12)
    keras.utils.set_random_seed(0)
    model = keras_fame.SASRec(data.num_items, hidden_dim=16, num_heads=2, max_len=12)
    before = evaluate_model(model, split.validation)["ndcg@10"]
    report = fit_with_early_stopping(
        model, split, epochs=4, batch_size=64, patience=4, verbose=0, negatives=None if sampler == "in_batch" else 64,
        sampler=sampler, optimizer=optimizer,
    )
    assert report["best_validation"]["ndcg@10"] > before + 0.01, (before, report["best_validation"])


def test_the_pipeline_trains_sasrec_and_fame_with_a_sampled_softmax(tmp_path):
    from keras_fame.data import write_sequences
    from keras_fame.experiments import run_pipeline

    data, _ = planted_facets(num_users=120, max_length=10, seed=0)
    seq = tmp_path / "seq.txt"
    write_sequences(str(seq), data)
    results = run_pipeline(str(seq), "toys", str(tmp_path / "out"), hidden_dim=8, num_heads=2, num_experts=2,
                           max_len=10, epochs=1, fame_epochs=1, verbose=0, negatives=16, sampler="popularity",
                           optimizer="lazy_adam")
    assert results["config"]["negatives"] == 16 and results["config"]["sampler"] == "popularity"
    assert results["config"]["optimizer"] == "lazy_adam"
    assert results["fame"]["test"]["exclude_history"]["users"] == data.num_users
    assert (tmp_path / "out" / "fame.keras").is_file()
