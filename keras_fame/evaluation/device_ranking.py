"""Full-ranking target ranks on the device: chunked, history excluded, in `keras.ops`.

`target_rank_model(model)` is a functional Keras model from a batch of users
(their input window, target and full history) to the 0-based conservative
rank of each target among all items, computed where the model runs (compiled
by `predict_on_batch` on every backend) a column chunk at a time: only
`[batch, chunk_size]` scores exist at once and only the ranks (and a
finiteness flag) come back to the host. `evaluate_model` streams users
through it; the numpy `target_ranks` / `chunked_target_ranks` are the
reference it is tested against.
"""

import keras
from keras import ops

from keras_fame.layers.item_scores import score_items
from keras_fame.layers.ranking import seen_in_range


def chunked_target_ranks_ops(user, table, targets, history=None, chunk_size=None):
    """0-based conservative ranks of `targets` for scores `user @ table.T`, a column chunk at a time.

    An item whose score is at least the target's counts as ahead of it
    (ties are conservative); the padding column, the target itself and the
    row's `history` ids (other than the target) never count. Equal to
    `keras_fame.evaluation.target_ranks` on the full score matrix up to float
    rounding of near-ties.

    Args:
        user: float `[batch, d]`.
        table: float `[num_items + 1, d]` (row 0 = padding).
        targets: int `[batch]`, in `1..num_items`.
        history: optional int `[batch, width]` ids to leave out of the
            ranking (0 = none). Defaults to None (`all_items`).
        chunk_size: optional int, columns scored at once. Defaults to None
            (one chunk).

    Returns:
        `(ranks int32 [batch], finite bool [batch])`: `finite` is false for
        a row with a NaN score or a non-finite target score.
    """
    targets = ops.cast(targets, "int32")
    columns = int(table.shape[0])
    chunk = columns if chunk_size is None else min(int(chunk_size), columns)
    target_scores = ops.sum(user * ops.take(table, targets, axis=0), axis=-1)  # [batch]
    finite = ops.isfinite(target_scores)
    ahead = ops.zeros_like(targets)
    for lo in range(0, columns, chunk):
        hi = min(lo + chunk, columns)
        scores = score_items(user, table[lo:hi])  # [batch, hi - lo]
        finite = ops.logical_and(finite, ops.logical_not(ops.any(ops.isnan(scores), axis=-1)))
        column = ops.arange(lo, hi, dtype="int32")[None, :]
        counted = ops.logical_and(scores >= target_scores[:, None], column != targets[:, None])
        if lo == 0:
            counted = ops.logical_and(counted, column != 0)
        if history is not None:
            counted = ops.logical_and(counted, ops.logical_not(seen_in_range(history, lo, hi)))
        ahead = ahead + ops.sum(ops.cast(counted, "int32"), axis=-1)
    return ahead, finite


class TargetRanks(keras.layers.Layer):
    """The head's user vectors and `chunked_target_ranks_ops` (not saved: it shares the model's head).

    Call arguments:
        features: the head's input at the newest position, `[batch, ...]`.
        item_table: `[num_items + 1, d]`.
        targets: int `[batch]`.
        history: int `[batch, width]`, ids left out of the ranking (0 = none).

    Returns:
        A dict: `ranks` int32 `[batch]`, `finite` bool `[batch]`.
    """

    def __init__(self, head, chunk_size=None, **kwargs):
        super().__init__(**kwargs)
        self.head, self.chunk_size = head, chunk_size

    def call(self, features, item_table, targets, history):
        user = self.head.user_vectors(features, training=False)["user"]
        ranks, finite = chunked_target_ranks_ops(
            user, ops.cast(item_table, user.dtype), targets, history, self.chunk_size
        )
        return {"ranks": ranks, "finite": finite}


def target_rank_model(model, chunk_size=None):
    """A functional model of `model`'s target ranks (shares its weights).

    Inputs (a dict): `item_ids` int32 `[batch, seq]` (the left-padded
    window), `targets` int32 `[batch]`, `history` int32 `[batch, width]`
    (ids to leave out, 0 = none; all zeros for the `all_items` protocol).
    Outputs: `ranks` int32 `[batch]` (0-based, conservative ties) and
    `finite` bool `[batch]`.

    Args:
        model: a `SASRec` or `FAME`.
        chunk_size: optional int, item columns scored at once. Defaults to
            None (all at once).
    """
    from keras_fame.models.retrieval import newest_position_encoder

    head = model._head_wiring[2]
    item_ids = keras.Input(shape=(None,), dtype="int32", name="item_ids")
    targets = keras.Input(shape=(), dtype="int32", name="targets")
    history = keras.Input(shape=(None,), dtype="int32", name="history")
    last, table = newest_position_encoder(model)(item_ids)
    ranks = TargetRanks(head, chunk_size, name="target_ranks", dtype=head.dtype_policy)(last, table, targets, history)
    return keras.Model({"item_ids": item_ids, "targets": targets, "history": history}, ranks,
                       name=f"{model.name}_target_ranks")
