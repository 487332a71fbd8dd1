"""The one ranking path: raw histories -> model input window -> masked top-k.

`SequentialRecommender.ranker()` (`keras_fame.models.retrieval`) chains
`NewestItems`, the model's encoder and `chunked_top_k`; `recommend()` and the
SavedModel export both call that ranker, so "keep the newest `max_len` items,
leave out what the user has seen, never return padding, take the top-k"
exists once, in `keras.ops` (any backend). `HistoryTopK` is the same top-k on
a score matrix that is already there.
"""

import keras
from keras import ops

from keras_fame.layers.item_scores import PADDING_SCORE


@keras.saving.register_keras_serializable(package="keras_fame")
class NewestItems(keras.layers.Layer):
    """Packs each row's valid item ids to the right and keeps the newest `max_len`.

    Ids outside `1..num_items` count as padding wherever they sit (never a
    crash, never an out-of-range gather); the valid ids keep their order.
    The result is the left-padded window SASRec and FAME read.

    Args:
        num_items: int, the largest valid id.
        max_len: int, the window length.

    Call arguments:
        item_ids: int `[batch, seq]`, any `seq` (shorter or longer than
            `max_len`), oldest first.

    Returns:
        int32 `[batch, max_len]`.

    Example:
    >>> layer = NewestItems(num_items=9, max_len=3)
    >>> keras.ops.convert_to_numpy(layer(keras.ops.array([[0, 4, 0, 12, 5], [7, 0, 0, 0, 0]]))).tolist()
    [[0, 4, 5], [0, 0, 7]]
    """

    def __init__(self, num_items, max_len, **kwargs):
        super().__init__(**kwargs)
        self.num_items = int(num_items)
        self.max_len = int(max_len)

    def call(self, item_ids):
        item_ids = ops.cast(item_ids, "int32")
        valid = ops.logical_and(item_ids > 0, item_ids <= self.num_items)
        ids = ops.where(valid, item_ids, ops.zeros_like(item_ids))
        # Sort key: 0 for padding, position + 1 for valid items; a sort moves
        # the padding to the front and keeps the valid items in order.
        position = ops.arange(1, ops.shape(ids)[1] + 1, dtype="int32")[None, :]
        key = ops.where(valid, position, ops.zeros_like(ids))
        order = ops.argsort(key, axis=-1)
        packed = ops.take_along_axis(ids, order, axis=-1)
        # Left-pad by max_len so that short rows have max_len columns, keep the last max_len.
        packed = ops.pad(packed, [[0, 0], [self.max_len, 0]])
        return packed[:, -self.max_len :]

    def compute_output_spec(self, item_ids):
        # Ids stay int32 whatever the layer's (float) dtype policy.
        return keras.KerasTensor((item_ids.shape[0], self.max_len), dtype="int32")

    def get_config(self):
        return {**super().get_config(), "num_items": self.num_items, "max_len": self.max_len}


@keras.saving.register_keras_serializable(package="keras_fame")
class HistoryTopK(keras.layers.Layer):
    """Top-k items per row, leaving out the padding id and (optionally) the row's history.

    Excluded entries sink to `PADDING_SCORE` and the padding column below
    them, so with `k <= num_items` padding is never returned, and an
    excluded item only if fewer than `k` items are left. Ties go to the
    lower id (`ops.top_k`, as `keras_fame.evaluation.top_k`).

    Args:
        k: int, items returned per row.
        exclude_seen: bool, leave out every id of the row's history.

    Call arguments:
        scores: float `[batch, num_items + 1]` or `[batch, heads, num_items + 1]`.
        history: int `[batch, seq]`, the row's item ids; 0 and ids outside
            `0..num_items` are ignored.

    Returns:
        `(item_ids, scores)`: int32 and float32, `scores.shape[:-1] + (k,)`.

    Example:
    >>> layer = HistoryTopK(k=2)
    >>> ids, _ = layer(keras.ops.array([[0.0, 3.0, 2.0, 1.0]]), keras.ops.array([[1]]))
    >>> keras.ops.convert_to_numpy(ids).tolist()
    [[2, 3]]
    """

    def __init__(self, k, exclude_seen=True, **kwargs):
        super().__init__(**kwargs)
        self.k = int(k)
        self.exclude_seen = bool(exclude_seen)

    def call(self, scores, history):
        width = int(scores.shape[-1])
        history = history if self.exclude_seen else None
        return chunked_top_k(lambda lo, hi: scores[..., lo:hi], width, self.k, history, chunk_size=width)

    def compute_output_spec(self, scores, history):
        shape = tuple(scores.shape[:-1]) + (self.k,)
        return keras.KerasTensor(shape, dtype="int32"), keras.KerasTensor(shape, dtype="float32")

    def get_config(self):
        return {**super().get_config(), "k": self.k, "exclude_seen": self.exclude_seen}


def seen_in_range(history, lo, hi):
    """bool `[batch, hi - lo]`: column `c` is true when item `lo + c` is in the row's history (ids > 0)."""
    width = hi - lo
    history = ops.cast(history, "int32")
    local = history - lo
    valid = ops.logical_and(history > 0, ops.logical_and(local >= 0, local < width))
    local = ops.where(valid, local, ops.full_like(local, width))  # out of range -> a spare column
    rows = ops.repeat(ops.arange(ops.shape(history)[0], dtype="int32"), ops.shape(history)[1])
    indices = ops.stack([rows, ops.reshape(local, (-1,))], axis=1)
    seen = ops.scatter_update(
        ops.zeros((ops.shape(history)[0], width + 1), "float32"), indices, ops.ones_like(indices[:, 0], "float32")
    )
    return seen[:, :width] > 0


def chunked_top_k(score_chunk, num_columns, k, history=None, chunk_size=65536):
    """A running top-k over column chunks: never more than `[..., chunk_size + k]` scores at once.

    Gives what `HistoryTopK` gives on the full score matrix (ties to the
    lower id as well: earlier chunks hold lower ids and come first in each
    merge), for catalogs whose `[batch, num_items + 1]` scores should not be
    materialised.

    Args:
        score_chunk: `(lo, hi) -> [..., hi - lo]` float scores of columns
            `lo..hi-1` (e.g. user vectors times a slice of the item table).
        num_columns: `num_items + 1` (column 0 is padding, never returned).
        k: items per row; `k <= chunk_size` and `k < num_columns`.
        history: optional int `[batch, seq]` ids to leave out (as `HistoryTopK`
            with `exclude_seen=True`); the scores' leading axis is the batch.
        chunk_size: columns scored at once (static).

    Returns:
        `(item_ids int32, scores float32)`, `[..., k]`.
    """
    if not 1 <= k <= chunk_size:
        raise ValueError(f"k={k} must be between 1 and chunk_size={chunk_size}")
    if k >= num_columns:
        raise ValueError(f"k={k} must be below num_columns={num_columns} (column 0 is padding)")
    best_scores = best_ids = None
    for lo in range(0, num_columns, chunk_size):
        hi = min(lo + chunk_size, num_columns)
        scores = ops.cast(score_chunk(lo, hi), "float32")
        columns = ops.arange(lo, hi, dtype="int32")
        if history is not None:
            seen = seen_in_range(history, lo, hi)
            if len(scores.shape) == 3:
                seen = seen[:, None, :]
            scores = ops.where(seen, ops.cast(PADDING_SCORE, scores.dtype), scores)
        if lo == 0:
            scores = ops.where(columns == 0, ops.cast(2 * PADDING_SCORE, scores.dtype), scores)
        ids = ops.broadcast_to(columns, ops.shape(scores))
        if best_scores is not None:
            scores = ops.concatenate([best_scores, scores], axis=-1)
            ids = ops.concatenate([best_ids, ids], axis=-1)
        best_scores, order = ops.top_k(scores, k=min(k, int(scores.shape[-1])))
        best_ids = ops.take_along_axis(ids, order, axis=-1)
    return best_ids, best_scores
