import keras
import numpy as np
import pytest

from keras_fame.data import EvaluationSet
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_fame.evaluation import (
    FullRankingEvaluation,
    evaluate_model,
    evaluate_ranking,
    metrics_from_ranks,
    ndcg_per_user,
    target_ranks,
)


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
    # Per user (for paired comparisons): its mean is the metric.
    np.testing.assert_allclose(ndcg_per_user(np.array([0, 4, 9, 30]), 5), [1, 1 / np.log2(6), 0, 0])


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


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), chunk_size=st.integers(1, 30), exclude=st.booleans())
def test_chunked_target_ranks_equal_the_full_ranking_ties_and_exclusions_included(seed, chunk_size, exclude):
    from keras_fame.evaluation import chunked_target_ranks, target_ranks
    from keras_fame.evaluation.ranking import history_mask_rows

    rng = np.random.default_rng(seed)
    users, num_items, dim = 9, 23, 3
    # Small integers: exact in float32, and many ties (with the target too).
    user_vectors = rng.integers(-2, 3, size=(users, dim)).astype(np.float32)
    item_matrix = rng.integers(-2, 3, size=(num_items + 1, dim)).astype(np.float32)
    targets = rng.integers(1, num_items + 1, size=users)
    lengths = rng.integers(0, 6, size=users)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    history = rng.integers(1, num_items + 1, size=indptr[-1])
    history[: min(2, len(history))] = targets[0]  # a re-purchase of the target stays rankable
    rows_cols = history_mask_rows(indptr, history, 0, users) if exclude else None
    want = target_ranks(user_vectors @ item_matrix.T, targets, rows_cols)
    got = chunked_target_ranks(user_vectors, item_matrix, targets, rows_cols, chunk_size=chunk_size)
    np.testing.assert_array_equal(got, want)


def test_chunked_evaluation_of_a_model_equals_the_full_one():
    import keras

    import keras_fame
    from keras_fame.data import TrainingBatches, leave_one_out
    from keras_fame.data.synthetic import planted_facets

    keras.utils.set_random_seed(0)
    data, _ = planted_facets(num_users=200, seed=0)
    split = leave_one_out(data, max_len=12)
    for model in (
        keras_fame.SASRec(data.num_items, hidden_dim=16, num_heads=2, max_len=12),
        keras_fame.FAME(data.num_items, hidden_dim=16, num_heads=2, num_experts=2, max_len=12),
    ):
        model.compile()
        model.fit(TrainingBatches(split.train_inputs, split.train_targets, 64), epochs=1, verbose=0)
        for exclude_history in (True, False):
            full = evaluate_model(model, split.test, exclude_history=exclude_history)
            chunked = evaluate_model(model, split.test, exclude_history=exclude_history, chunk_size=50)
            for key, value in full.items():
                # Equal up to float rounding of a near-tie: at most one user's rank may move.
                tolerance = 0 if isinstance(value, (int, str)) else 1.0 / len(split.test)
                assert chunked[key] == pytest.approx(value, abs=tolerance), key


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), chunk_size=st.one_of(st.none(), st.integers(1, 30)), exclude=st.booleans())
def test_ranks_on_the_device_equal_the_numpy_reference(seed, chunk_size, exclude):
    from keras_fame.data.split import pad_left
    from keras_fame.evaluation import target_ranks
    from keras_fame.evaluation.device_ranking import chunked_target_ranks_ops
    from keras_fame.evaluation.ranking import history_mask_rows

    rng = np.random.default_rng(seed)
    users, num_items, dim = 9, 23, 3
    user_vectors = rng.integers(-2, 3, size=(users, dim)).astype(np.float32)  # exact, with many ties
    table = rng.integers(-2, 3, size=(num_items + 1, dim)).astype(np.float32)
    targets = rng.integers(1, num_items + 1, size=users)
    lengths = rng.integers(0, 6, size=users)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    history = rng.integers(1, num_items + 1, size=indptr[-1])
    history[: min(2, len(history))] = targets[0]  # a re-purchase of the target stays rankable
    want = target_ranks(user_vectors @ table.T, targets, history_mask_rows(indptr, history, 0, users) if exclude else None)
    dense = pad_left(history, indptr[:-1], indptr[1:], max(1, int(lengths.max()))) if exclude else None
    ranks, finite = chunked_target_ranks_ops(user_vectors, table, targets.astype("int32"),
                                             None if dense is None else dense.astype("int32"), chunk_size)
    np.testing.assert_array_equal(np.asarray(ranks), want)
    assert np.asarray(finite).all()


def test_evaluate_model_on_the_device_equals_the_numpy_scorer_path_and_refuses_nan():
    import keras

    import keras_fame
    from keras_fame.data import leave_one_out
    from keras_fame.data.synthetic import planted_facets
    from keras_fame.evaluation.ranking import history_mask_rows

    keras.utils.set_random_seed(0)
    data, _ = planted_facets(num_users=150, seed=1)
    split = leave_one_out(data, max_len=12)
    model = keras_fame.FAME(data.num_items, hidden_dim=16, num_heads=2, num_experts=2, max_len=12)
    scorer = model.scorer()
    for exclude_history in (True, False):
        reference = evaluate_ranking(lambda x: scorer.predict_on_batch(x)["scores"], split.test,
                                     exclude_history=exclude_history, batch_size=64)
        got = evaluate_model(model, split.test, exclude_history=exclude_history, batch_size=64)
        for key, value in reference.items():
            tolerance = 0 if isinstance(value, (int, str)) else 1.0 / len(split.test)  # a near-tie may move one user
            assert got[key] == pytest.approx(value, abs=tolerance), key
    # Per-user ranks for paired comparisons: the numpy reference's, in the evaluation set's order.
    scores = scorer.predict_on_batch(split.test.inputs)["scores"]
    exclude = history_mask_rows(split.test.history_indptr, split.test.history_items, 0, len(split.test))
    want = target_ranks(np.asarray(scores), split.test.targets, exclude)
    for result in (evaluate_model(model, split.test, batch_size=64, return_ranks=True),
                   evaluate_ranking(lambda x: scorer.predict_on_batch(x)["scores"], split.test, batch_size=64,
                                    return_ranks=True)):
        assert result["ranks"].dtype == np.int64 and len(result["ranks"]) == len(split.test)
        assert np.mean(result["ranks"] != want) <= 1.0 / len(split.test)  # a near-tie may move one user
        assert {k: v for k, v in result.items() if "@" in k} == metrics_from_ranks(result["ranks"])
    assert "ranks" not in got
    table = np.asarray(model.item_embedding.item_embeddings)
    table[5] = np.nan
    model.item_embedding.item_embeddings.assign(table)
    with pytest.raises(FloatingPointError, match="row 0: the model produced NaN scores"):
        evaluate_model(model, split.test)
