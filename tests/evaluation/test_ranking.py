import keras
import numpy as np
import pytest

from keras_fame.data import EvaluationSet
from keras_fame.evaluation import FullRankingEvaluation, evaluate_ranking, metrics_from_ranks, target_ranks


def _brute_force(scores, targets, histories, exclude_history, ks=(5, 10, 20)):
    """One user at a time, straight from the definitions."""
    hr = {k: [] for k in ks}
    ndcg = {k: [] for k in ks}
    for row, target in enumerate(targets):
        t = scores[row, target]
        rank = 0
        for item in range(1, scores.shape[1]):
            if item == target:
                continue
            if exclude_history and item in histories[row]:
                continue
            if scores[row, item] >= t:  # ties count against the target
                rank += 1
        for k in ks:
            hr[k].append(rank < k)
            ndcg[k].append(1 / np.log2(rank + 2) if rank < k else 0.0)
    out = {}
    for k in ks:
        out[f"hr@{k}"] = float(np.mean(hr[k]))
        out[f"ndcg@{k}"] = float(np.mean(ndcg[k]))
    return out


def _random_case(seed, users=53, items=40, max_len=6):
    rng = np.random.default_rng(seed)
    # Coarse scores: many ties.
    scores = rng.integers(0, 6, size=(users, items + 1)).astype("float32")
    targets = rng.integers(1, items + 1, size=users)
    histories = [rng.choice(np.arange(1, items + 1), size=rng.integers(1, 12), replace=False) for _ in range(users)]
    lengths = np.array([len(h) for h in histories])
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.concatenate(histories)
    from keras_fame.data import pad_left

    inputs = pad_left(flat, indptr[:-1], indptr[1:], max_len)
    ev = EvaluationSet(inputs, targets.astype("int32"), indptr, flat.astype("int32"), items)
    return scores, ev, [set(h.tolist()) for h in histories]


@pytest.mark.parametrize("exclude_history", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_streamed_metrics_equal_brute_force(seed, exclude_history):
    scores, ev, histories = _random_case(seed)
    # The score function sees padded batches; map rows back by their inputs.
    lookup = {tuple(r): i for i, r in enumerate(ev.inputs.tolist())}

    def score_fn(batch):
        return np.stack([scores[lookup[tuple(r)]] if tuple(r) in lookup and any(r) else scores[0] for r in batch.tolist()])

    assert len(lookup) == len(ev)  # rows are distinct
    got = evaluate_ranking(score_fn, ev, exclude_history=exclude_history, batch_size=16)
    expected = _brute_force(scores, ev.targets, histories, exclude_history)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert got["protocol"] == ("exclude_history" if exclude_history else "all_items")
    assert got["users"] == len(ev)


def test_ties_are_conservative_and_padding_is_never_ranked():
    scores = np.zeros((1, 6))
    scores[0, 0] = 100.0  # padding column, ignored
    assert target_ranks(scores, np.array([3]))[0] == 4  # ties with all 5 items: last
    scores[0, 3] = 1.0
    assert target_ranks(scores, np.array([3]))[0] == 0


def test_history_exclusion_keeps_the_target():
    scores = np.array([[0.0, 5.0, 4.0, 3.0]])
    rows, cols = np.array([0, 0]), np.array([1, 3])  # item 3 is also the target
    assert target_ranks(scores, np.array([3]), (rows, cols))[0] == 1  # only item 2 is ahead


def test_nan_scores_raise():
    scores = np.array([[0.0, 1.0, np.nan]])
    with pytest.raises(FloatingPointError, match="NaN"):
        target_ranks(scores, np.array([1]))


def test_metrics_from_ranks():
    out = metrics_from_ranks(np.array([0, 4, 9, 30]), ks=(5, 10))
    assert out["hr@5"] == 0.5 and out["hr@10"] == 0.75
    assert out["ndcg@5"] == pytest.approx((1 + 1 / np.log2(6)) / 4)


def test_callback_feeds_early_stopping():
    from keras_fame.data import from_lists, leave_one_out
    from keras_fame.models import SASRec

    data = from_lists([[1, 2, 3, 4, 5], [2, 3, 4, 5, 6], [3, 4, 5, 6, 7], [6, 5, 4, 3, 2]])
    split = leave_one_out(data, max_len=5)
    model = SASRec(data.num_items, hidden_dim=8, max_len=5)
    model.compile()
    evaluation = FullRankingEvaluation(split.validation, every_n_epochs=2, verbose=0)
    stopper = keras.callbacks.EarlyStopping(monitor="val_ndcg@10", mode="max", patience=100)
    history = model.fit(split.train_inputs, split.train_targets, epochs=3, callbacks=[evaluation, stopper], verbose=0)
    assert len(history.history["val_ndcg@10"]) == 3
    assert [epoch for epoch, _ in evaluation.history] == [0, 1, 2]  # first, every 2nd, last
    assert stopper.best == max(history.history["val_ndcg@10"])


def test_top_k_breaks_ties_by_lower_index():
    from keras_fame.evaluation import top_k

    scores = np.array([[0.0, 1.0, 1.0, 0.5, 1.0, 1.0], [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    ids, values = top_k(scores, 3)
    assert ids.tolist() == [[1, 2, 4], [0, 1, 2]]
    assert values.tolist() == [[1.0, 1.0, 1.0], [5.0, 4.0, 3.0]]
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(4, 3, 50))
    ids, values = top_k(scores, 7)
    expected = np.argsort(-scores, axis=-1, kind="stable")[..., :7]
    assert (ids == expected).all()
