"""Scoring and retrieval from a model's scoring head: one interface for SASRec and FAME.

Both scoring heads (`ItemScores`, SASRec's Eq. 6; `FacetGatedHead`, FAME's
Eq. 7-11) expose `user_vectors(features)`, a dict of query vectors in item
space:

- `user` `[..., d]`: the model's score of item `v` is `user . x_v`, with `x_v`
  the row of the item table (for FAME the projection `W_f` sits on the query
  side, so no projected table exists);
- `head_users` `[..., H, d]` and `gates` `[..., H]`: FAME only, each head's own
  query and the gate over heads.

So every score in the package is a dot product with rows of the one item
table: full scores, a chunk of columns, sampled candidates, or facet labels
(`facet_logits`). The layers here wrap a head for the newest position of each
row; they share the head's weights and are not saved (the model is).

Why not keras-rs' `BruteForceRetrieval`: it scores a query against a fixed
candidate table and takes the top-k, but has no per-row exclusion of seen
items; here the exclusion, the padding column and the chunked top-k for large
catalogues are `keras_fame.layers.ranking.chunked_top_k`.
"""

import keras
from keras import ops

from keras_fame.layers.item_scores import mask_padding_scores, score_items
from keras_fame.layers.last_position import LastPosition
from keras_fame.layers.ranking import NewestItems, chunked_top_k


def facet_logits(queries, facet_rows):
    """Scores of every label of every facet, as items are scored: `q_k . E_k^T` (ours).

    Args:
        queries: list of `[..., d]` tensors, the query of each facet (the
            head's `facet_queries`: SASRec's user vector for every facet,
            FAME head `k`'s own query for facet `k`).
        facet_rows: list of `[C_k + 1, d]` label rows in item space
            (`ItemEmbedding.facet_rows`); extra rows are ignored.

    Returns:
        A list of `len(queries)` tensors `[..., C_k + 1]`, column 0 (no label)
        at `PADDING_SCORE`.
    """
    return [
        mask_padding_scores(score_items(query, ops.cast(rows, query.dtype))) for query, rows in zip(queries, facet_rows)
    ]


class NewestScores(keras.layers.Layer):
    """Full scores of the newest position: `scores`, and for FAME `head_weights` (+ `head_scores` with `explain`).

    Calls the head's methods directly: Keras requires a layer to return one
    output structure on every symbolic call, and the training graph calls
    the head for scores only.

    Call arguments:
        features: the head's input at the newest position, `[batch, ...]`.
        item_table: `[num_items + 1, d]`.

    Returns:
        A dict: `scores` `[batch, num_items + 1]` (padding column at
        `PADDING_SCORE`); with a gate, `head_weights` `[batch, H]`; with
        `explain`, `head_scores` `[batch, H, num_items + 1]`.
    """

    def __init__(self, head, explain=False, **kwargs):
        super().__init__(**kwargs)
        self.head, self.explain = head, bool(explain)

    def call(self, features, item_table):
        vectors = self.head.user_vectors(features, training=False)
        table = ops.cast(item_table, vectors["user"].dtype)
        outputs = {"scores": mask_padding_scores(score_items(vectors["user"], table))}
        if "gates" in vectors:
            outputs["head_weights"] = vectors["gates"]
        if self.explain and "head_users" in vectors:
            outputs["head_scores"] = mask_padding_scores(score_items(vectors["head_users"], table))
        return outputs


class UserVectors(keras.layers.Layer):
    """The head's `user` vector at the newest position, `[batch, d]`."""

    def __init__(self, head, **kwargs):
        super().__init__(**kwargs)
        self.head = head

    def call(self, features):
        return self.head.user_vectors(features, training=False)["user"]


class TopKRetrieval(keras.layers.Layer):
    """The head's top-k items per row, leaving out padding and (optionally) the row's history.

    Scores `user . x_v` over the item table `chunk_size` columns at a time
    with a running top-k (`chunked_top_k`), so with a chunk no
    `[batch, num_items + 1]` score matrix exists; `chunk_size=None` scores
    the whole table as one chunk. Ties go to the lower id.

    Args:
        head: the model's scoring head.
        k: int, items per row; `1 <= k <= num_items`.
        chunk_size: optional int, columns scored at once. Defaults to None
            (one chunk).
        exclude_seen: bool, leave out every id of the row's history.
            Defaults to True.
        explain: bool, also each head's own top-k (FAME). Defaults to False.

    Call arguments:
        features: the head's input at the newest position, `[batch, ...]`.
        item_table: `[num_items + 1, d]`.
        history: int `[batch, seq]`, the row's ids (0 and ids outside the
            catalogue are ignored).

    Returns:
        A dict: `item_ids` int32 and `scores` float32 `[batch, k]`; with a
        gate `head_weights` `[batch, H]`; with `explain`, `head_item_ids` /
        `head_scores` `[batch, H, k]`.
    """

    def __init__(self, head, k, chunk_size=None, exclude_seen=True, explain=False, **kwargs):
        super().__init__(**kwargs)
        self.head, self.k = head, int(k)
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.exclude_seen, self.explain = bool(exclude_seen), bool(explain)

    def call(self, features, item_table, history):
        vectors = self.head.user_vectors(features, training=False)
        table = ops.cast(item_table, vectors["user"].dtype)
        columns = int(item_table.shape[0])
        chunk = columns if self.chunk_size is None else min(self.chunk_size, columns)
        history = history if self.exclude_seen else None

        def top_k(queries):
            return chunked_top_k(lambda lo, hi: score_items(queries, table[lo:hi]), columns, self.k, history, chunk)

        outputs = dict(zip(("item_ids", "scores"), top_k(vectors["user"])))
        if "gates" in vectors:
            outputs["head_weights"] = ops.cast(vectors["gates"], "float32")
        if self.explain and "head_users" in vectors:
            outputs["head_item_ids"], outputs["head_scores"] = top_k(vectors["head_users"])
        return outputs


class ItemTableSnapshot(keras.layers.Layer):
    """A model's item table computed once and held as a non-trainable weight (for serving; not saved).

    With item facets or a content table, `ItemEmbedding.item_table()` is
    computed from several weights (`[num_items + 1, d]` gathers and adds):
    a ranker that reads it recomputes it for every request (about 160 ms of
    a 200 ms request at 10^6 items on this project's CPU machine,
    `benchmarks/serving_table_snapshot.py`). A ranker given a snapshot scores against
    the stored table instead; it is a copy, so a model trained or
    relabelled afterwards needs `refresh(model)` (or, for an export, a new
    export). The copy costs `(num_items + 1) * d` floats of memory.

    Args:
        model: a built `SASRec` or `FAME`.

    Call arguments:
        item_ids: any tensor (only ties the layer into a functional graph).

    Returns:
        The table, `[num_items + 1, d]`, equal to `item_table(training=False)`.
    """

    def __init__(self, model, **kwargs):
        super().__init__(trainable=False, **kwargs)
        # No reference to `model` is kept: Keras would track its layers as this layer's, and an
        # export would then hold the item weights twice.
        table = model.item_embedding.item_table(training=False)
        self.table = self.add_weight(name="table", shape=tuple(table.shape), initializer="zeros",
                                     dtype=keras.backend.standardize_dtype(table.dtype), trainable=False)
        self.table.assign(table)
        self.built = True

    def refresh(self, model):
        """Copy `model`'s current item table (same shape) into the snapshot, e.g. after training or relabelling."""
        self.table.assign(model.item_embedding.item_table(training=False))

    def call(self, item_ids):
        return ops.convert_to_tensor(self.table)

    def compute_output_spec(self, item_ids):
        return keras.KerasTensor(tuple(self.table.shape), dtype=self.table.dtype)


def newest_position_encoder(model):
    """A functional model from `item_ids` to `(the head's input at the newest position, the item table)`."""
    features, item_table, _ = model._head_wiring
    return keras.Model(model.inputs, [LastPosition(name="last_position")(features), item_table],
                       name=f"{model.name}_newest_position")


def scorer(model, explain=False):
    """A functional model scoring only the newest position of each row of `model`'s input (shares its weights)."""
    features, item_table, head = model._head_wiring
    last = LastPosition(name="last_position")(features)
    outputs = NewestScores(head, explain, name="scorer_head", dtype=head.dtype_policy)(last, item_table)
    if explain:
        for name, tensor in model._explanations.items():
            outputs[name] = keras.ops.cast(LastPosition(name=f"last_{name}")(tensor), "float32")
    return keras.Model(model.inputs, outputs, name=f"{model.name}_scorer")


def score_factors(model):
    """`(user_model, item_matrix)`: `user_model(item_ids) @ item_matrix.T` are the newest position's scores.

    `item_matrix` is the item table itself (numpy float32
    `[num_items + 1, d]`) for SASRec and FAME alike.
    """
    features, item_table, head = model._head_wiring
    last = LastPosition(name="last_position")(features)
    user = UserVectors(head, name="user_vector", dtype=head.dtype_policy)(last)
    table = keras.ops.convert_to_numpy(model.item_embedding.item_table(training=False)).astype("float32")
    return keras.Model(model.inputs, user, name=f"{model.name}_user_vectors"), table


def ranker(model, k=10, exclude_seen=True, explain=False, chunk_size=None, table_snapshot=None):
    """Raw histories -> `NewestItems` window -> the model's encoder -> `TopKRetrieval` (see `SequentialRecommender.ranker`).

    With `table_snapshot` (an `ItemTableSnapshot` of `model`, may be shared
    by several rankers) the items are scored against the snapshot's table
    instead of the table the encoder computes.
    """
    if not 1 <= k <= model.num_items:
        raise ValueError(f"k={k} must be between 1 and num_items={model.num_items}")
    if chunk_size is not None and not 1 <= k <= int(chunk_size):
        raise ValueError(f"k={k} must not exceed chunk_size={chunk_size}")
    item_ids = keras.Input(shape=(None,), dtype="int32", name="item_ids")
    window = NewestItems(model.num_items, model.max_len, name="newest_items")(item_ids)
    last, table = newest_position_encoder(model)(window)
    if table_snapshot is not None:
        table = table_snapshot(window)
    head = model._head_wiring[2]
    retrieval = TopKRetrieval(head, k, chunk_size, exclude_seen, explain, name="top_k", dtype=head.dtype_policy)
    return keras.Model(item_ids, retrieval(last, table, item_ids), name=f"{model.name}_ranker")
