"""Full-ranking evaluation: HR@k and NDCG@k against ALL items (§5.2).

Protocol, as implemented here:
- The target is ranked against every item `1..num_items`; the padding id 0
  is never ranked.
- `exclude_history=True` (the S3-Rec / ICLRec family) removes every item of
  the user's FULL history from the ranking, except the target itself (a
  re-purchase stays rankable rather than being scored a miss).
  `exclude_history=False` (RecBole) ranks everything. Results carry the
  protocol under `protocol`.
- Ties are conservative: an item scoring exactly the target's score ranks
  ahead of it, so a constant model gets rank `num_items` (or the number of
  rankable items), not 1.
- Users are streamed in batches, so memory is `batch_size x (num_items + 1)`.
- NaN scores, or a non-finite target score, raise instead of giving silently
  wrong numbers.

`rank` is 0-based; HR@k = mean(rank < k), NDCG@k = mean(1/log2(rank + 2) if
rank < k else 0) (one relevant item per user).
"""

import numpy as np

DEFAULT_KS = (5, 10, 20)


def history_mask_rows(indptr, items, start, stop):
    """Row/column indices of rows `start:stop`'s history items, rows relative to `start`."""
    lo, hi = indptr[start], indptr[stop]
    lengths = np.diff(indptr[start : stop + 1])
    rows = np.repeat(np.arange(stop - start), lengths)
    return rows, np.asarray(items[lo:hi], dtype=np.int64)


def target_ranks(scores, targets, exclude=None):
    """0-based conservative ranks of `targets` among columns `1..` of `scores`.

    Args:
        scores: float `[rows, num_items + 1]`; column 0 (padding) is ignored.
        targets: int `[rows]`, in `1..num_items`.
        exclude: optional `(rows, cols)` index arrays of entries to drop from
            the ranking; an entry equal to the row's target is kept.

    Returns:
        int64 `[rows]`.
    """
    scores = np.array(scores, dtype=np.float64, copy=True)
    n = len(targets)
    targets = np.asarray(targets, dtype=np.int64)
    if np.isnan(scores).any():
        bad = int(np.flatnonzero(np.isnan(scores).any(axis=1))[0])
        raise FloatingPointError(f"row {bad}: the model produced NaN scores")
    target_scores = scores[np.arange(n), targets]
    if not np.all(np.isfinite(target_scores)):
        bad = int(np.flatnonzero(~np.isfinite(target_scores))[0])
        raise FloatingPointError(f"row {bad}: the target's score is {target_scores[bad]} (not finite)")
    scores[:, 0] = -np.inf
    if exclude is not None:
        rows, cols = exclude
        keep = cols != targets[rows]
        scores[rows[keep], cols[keep]] = -np.inf
    ahead = scores >= target_scores[:, None]
    return ahead.sum(axis=1) - 1  # the target ties with itself


def ndcg_per_user(ranks, k):
    """Each user's NDCG@k from 0-based target ranks: `1 / log2(rank + 2)` if `rank < k`, else 0.

    One relevant item per user, so the ideal DCG is 1. Returns float64 of the
    shape of `ranks`; its mean is `metrics_from_ranks`' `ndcg@k` (e.g. for a
    paired comparison of two rankers on the same users).
    """
    ranks = np.asarray(ranks)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def metrics_from_ranks(ranks, ks=DEFAULT_KS):
    ranks = np.asarray(ranks)
    out = {}
    for k in ks:
        out[f"hr@{k}"] = float((ranks < k).mean()) if len(ranks) else 0.0
        out[f"ndcg@{k}"] = float(ndcg_per_user(ranks, k).mean()) if len(ranks) else 0.0
    return out


def top_k(scores, k):
    """Indices and values of the `k` largest entries along the last axis, best first.

    Ties go to the lower index, as in `tf.math.top_k`, also at the k-th
    place, so the result is fully determined by the scores.
    """
    scores = np.asarray(scores)
    lead, width = scores.shape[:-1], scores.shape[-1]
    flat = scores.reshape(-1, width)
    kth = -np.partition(-flat, k - 1, axis=-1)[:, k - 1 : k]  # k-th largest value per row
    above = flat > kth
    ties = flat == kth
    room = k - above.sum(axis=-1, keepdims=True)
    chosen = above | (ties & (np.cumsum(ties, axis=-1) <= room))
    index = np.nonzero(chosen)[1].reshape(-1, k)  # ascending ids, exactly k per row
    values = np.take_along_axis(flat, index, axis=-1)
    order = np.argsort(-values, axis=-1, kind="stable")
    index = np.take_along_axis(index, order, axis=-1)
    values = np.take_along_axis(values, order, axis=-1)
    return index.astype(np.int32).reshape(lead + (k,)), values.reshape(lead + (k,))


def evaluate_ranking(score_fn, evaluation_set, ks=DEFAULT_KS, exclude_history=True, batch_size=256,
                     return_ranks=False):
    """Streams users through `score_fn` and returns HR@k / NDCG@k.

    Args:
        score_fn: maps int32 `[batch, max_len]` inputs to numpy scores
            `[batch, num_items + 1]` (e.g. `model.scorer()`'s `scores`).
        evaluation_set: `EvaluationSet` (inputs, targets, full histories).
        ks: cut-offs.
        exclude_history: drop already-seen items (see the module docstring).
        batch_size: users per batch; the last batch is padded to this size
            so compiled backends see one shape.
        return_ranks: also return each user's 0-based target rank (e.g. for
            a paired comparison of two rankers on the same users).
            Defaults to False.

    Returns:
        dict: `hr@k`, `ndcg@k` for each k, plus `users` and `protocol`; with
        `return_ranks`, also `ranks`, int64 `[users]` in `evaluation_set`'s
        order (the metrics are `metrics_from_ranks(ranks, ks)`).
    """
    expected = evaluation_set.num_items + 1

    def ranks_of(batch, targets, exclude):
        scores = np.asarray(score_fn(batch))[: len(targets)]
        if scores.shape[-1] != expected:
            raise ValueError(f"score_fn returned {scores.shape[-1]} columns, expected num_items + 1 = {expected}")
        return target_ranks(scores, targets, exclude)

    return _stream(ranks_of, evaluation_set, ks, exclude_history, batch_size, return_ranks)


def _metrics(ranks, ks, exclude_history, return_ranks):
    out = metrics_from_ranks(ranks, ks)
    out["users"] = int(len(ranks))
    out["protocol"] = "exclude_history" if exclude_history else "all_items"
    if return_ranks:
        out["ranks"] = ranks
    return out


def _stream(ranks_of, evaluation_set, ks, exclude_history, batch_size, return_ranks):
    """Users in batches -> `ranks_of(inputs padded to batch_size, targets, exclude)` -> metrics."""
    ev = evaluation_set
    n = len(ev)
    ranks = np.empty(n, dtype=np.int64)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        batch = ev.inputs[start:stop]
        if stop - start < batch_size:  # one shape for compiled backends
            batch = np.concatenate([batch, np.zeros((batch_size - len(batch), batch.shape[1]), batch.dtype)])
        exclude = history_mask_rows(ev.history_indptr, ev.history_items, start, stop) if exclude_history else None
        ranks[start:stop] = ranks_of(batch, ev.targets[start:stop], exclude)
    return _metrics(ranks, ks, exclude_history, return_ranks)


def chunked_target_ranks(user_vectors, item_matrix, targets, exclude=None, chunk_size=65536):
    """`target_ranks` for scores `user_vectors @ item_matrix.T`, computed a column chunk at a time.

    Never holds more than `[rows, chunk_size]` scores. The target's score is
    `user . item_matrix[target]`; an item whose score is at least that counts
    as ahead (conservative ties), the target itself, the padding column and
    the `exclude` entries never. Equal to `target_ranks` on the full product
    up to float rounding of near-ties.

    Args:
        user_vectors: float `[rows, D]`.
        item_matrix: float `[num_items + 1, D]`.
        targets: int `[rows]` in `1..num_items`.
        exclude: optional `(rows, cols)` entries to drop (a row's target is kept).
        chunk_size: columns per chunk.

    Returns:
        int64 `[rows]`, 0-based.
    """
    user_vectors = np.asarray(user_vectors, dtype=np.float32)
    item_matrix = np.asarray(item_matrix, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.int64)
    n = len(targets)
    if np.isnan(user_vectors).any():
        bad = int(np.flatnonzero(np.isnan(user_vectors).any(axis=1))[0])
        raise FloatingPointError(f"row {bad}: the model produced NaN scores")
    target_scores = np.einsum("nd,nd->n", user_vectors, item_matrix[targets])
    if not np.all(np.isfinite(target_scores)):
        bad = int(np.flatnonzero(~np.isfinite(target_scores))[0])
        raise FloatingPointError(f"row {bad}: the target's score is {target_scores[bad]} (not finite)")
    ahead = np.zeros(n, dtype=np.int64)
    rows_all = np.arange(n)
    if exclude is not None:
        ex_rows, ex_cols = exclude
        keep = ex_cols != targets[ex_rows]
        ex_rows, ex_cols = ex_rows[keep], ex_cols[keep]
    for lo in range(0, len(item_matrix), chunk_size):
        hi = min(lo + chunk_size, len(item_matrix))
        scores = user_vectors @ item_matrix[lo:hi].T
        at_least = scores >= target_scores[:, None]
        if lo == 0:
            at_least[:, 0] = False  # padding
        inside = (targets >= lo) & (targets < hi)
        at_least[rows_all[inside], targets[inside] - lo] = False  # the target itself
        if exclude is not None:
            sel = (ex_cols >= lo) & (ex_cols < hi)
            at_least[ex_rows[sel], ex_cols[sel] - lo] = False
        ahead += at_least.sum(axis=1)
    return ahead


def evaluate_model(
    model, evaluation_set, ks=DEFAULT_KS, exclude_history=True, batch_size=256, chunk_size=None, rank_model=None,
    return_ranks=False,
):
    """HR@k / NDCG@k of a `SASRec`/`FAME` model, ranked on the device.

    Users are streamed `batch_size` at a time through
    `keras_fame.evaluation.device_ranking.target_rank_model` (the newest
    position's user vectors against the item table, history excluded in
    the graph), so only the ranks come back to the host.

    Args:
        model: a `SASRec` or `FAME`.
        evaluation_set: `EvaluationSet` (e.g. `split.test`).
        ks: cut-offs. Defaults to `(5, 10, 20)`.
        exclude_history: protocol (module docstring). Defaults to True.
        batch_size: users per batch (the last batch is padded, so compiled
            backends see one batch size). Defaults to 256.
        chunk_size: optional int, items scored at once: memory
            `batch_size x chunk_size` scores instead of `batch_size x
            (num_items + 1)`. Defaults to None (all at once).
        rank_model: a `target_rank_model(model, chunk_size)` to reuse
            (e.g. across epochs). Defaults to a new one.
        return_ranks: also return each user's 0-based target rank (as
            `evaluate_ranking`). Defaults to False.

    Returns:
        dict: `hr@k`, `ndcg@k` for each k, plus `users` and `protocol`; with
        `return_ranks`, also `ranks`, int64 `[users]`.

    Raises:
        FloatingPointError: naming the first user whose scores hold NaN or
            whose target's score is not finite.
        ValueError: if the model and the evaluation set differ in items.
    """
    from keras_fame.data.split import pad_left
    from keras_fame.evaluation.device_ranking import target_rank_model
    from keras_fame.utils import predict_rows

    ev = evaluation_set
    if model.num_items != ev.num_items:
        raise ValueError(f"the model scores {model.num_items} items, the evaluation set has {ev.num_items}")
    rank_model = rank_model or target_rank_model(model, chunk_size)
    n = len(ev)
    ranks = np.empty(n, dtype=np.int64)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        pad = batch_size - (stop - start)  # one batch size for compiled backends
        width = 1
        if exclude_history:
            longest = int(np.diff(ev.history_indptr[start : stop + 1]).max(initial=1))
            while width < longest:  # widths in powers of two: few distinct shapes are traced
                width *= 2
            history = pad_left(ev.history_items, ev.history_indptr[start:stop], ev.history_indptr[start + 1 : stop + 1],
                               width)
        else:
            history = np.zeros((stop - start, width), np.int64)
        batch = {
            "item_ids": np.pad(ev.inputs[start:stop], [(0, pad), (0, 0)]).astype("int32"),
            "targets": np.pad(ev.targets[start:stop], (0, pad), constant_values=1).astype("int32"),
            "history": np.pad(history, [(0, pad), (0, 0)]).astype("int32"),
        }
        out = predict_rows(rank_model, batch, rows=stop - start)  # the padding rows cut off too
        if not out["finite"].all():
            bad = start + int(np.flatnonzero(~out["finite"])[0])
            raise FloatingPointError(f"row {bad}: the model produced NaN scores or a non-finite target score")
        ranks[start:stop] = out["ranks"]
    return _metrics(ranks, ks, exclude_history, return_ranks)


def evaluate_test_set(model, split):
    """Test metrics of `model` on `split.test` under both protocols.

    Returns:
        `{"exclude_history": metrics, "all_items": metrics}`, each as
        `evaluate_model` returns them.
    """
    from keras_fame.evaluation.device_ranking import target_rank_model

    ranks = target_rank_model(model)
    return {
        "exclude_history": evaluate_model(model, split.test, exclude_history=True, rank_model=ranks),
        "all_items": evaluate_model(model, split.test, exclude_history=False, rank_model=ranks),
    }
