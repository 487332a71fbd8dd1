"""What SASRec and FAME share: the functional skeleton, scoring and inference."""

import keras
import numpy as np

from keras_fame.data.histories import histories_to_arrays
from keras_fame.data.split import pad_left
from keras_fame.losses import MaskedSoftmaxCrossEntropy
from keras_fame.models import catalogue, retrieval
from keras_fame.utils import dtype_policy, predict_rows


def scoring_dtype():
    """The dtype policy of the scoring heads: float32 under a mixed global policy, else the global one.

    Under `mixed_bfloat16` the transformer computes in bf16 but the item
    scores do not: bf16 keeps 8 mantissa bits, so scores over 10^4 items
    would tie near the target and shift every rank; and the softmax and the
    loss want float32 logits. Returns a policy name for the heads' `dtype=`,
    or None (inherit the global policy).
    """
    policy = keras.config.dtype_policy()
    return "float32" if policy.compute_dtype != policy.variable_dtype else None


class SequentialRecommender(keras.Model):
    """Base of the functional next-item models (not registered on its own).

    Subclasses build, in `__init__`, a graph from `item_ids` (int32
    `[batch, seq]`, left-padded, oldest first) to scores
    `[batch, seq, num_items + 1]` for every position (what `fit` trains),
    and call `_set_head(features, item_table, head)`, naming the symbolic
    tensors the scoring head reads, so that `scorer()` can score only the
    newest position.
    """

    has_gates = False  # FAME's head has a gate over heads (Eq. 10); SASRec's does not

    def _embed_and_encode(self, item_ids, num_blocks, facet_attention=False, facet_agreement=False):
        """Shared embedding + the first `num_blocks` SASRec blocks (symbolic).

        Returns `(x, item_table, padding_mask, facet_sequences, agreement)`;
        `facet_sequences` is None without `facet_attention`, `agreement`
        (`ItemEmbedding.facet_agreement`, `[batch, seq, K]`) None without
        `facet_agreement`.
        """
        outputs = self.item_embedding(
            item_ids, return_facet_sequences=facet_attention, return_facet_agreement=facet_agreement
        )
        x, item_table, padding_mask = outputs[:3]
        facet_sequences = outputs[3] if facet_attention else None
        agreement = outputs[-1] if facet_agreement else None
        for block in self.transformer_blocks[:num_blocks]:
            x = block(x, padding_mask=padding_mask, facet_sequences=facet_sequences)
        return x, item_table, padding_mask, facet_sequences, agreement

    @staticmethod
    def _facet_dims(facet_attention, item_embedding):
        """The blocks' `facet_dims`: one width per facet with `facet_attention` (which needs facets), else None."""
        if not facet_attention:
            return None
        if not item_embedding.facet_vocab_sizes:
            raise ValueError("facet_attention=True attends by the items' facets: give item_facets (or facet_vocab_sizes)")
        return [item_embedding.facet_width] * len(item_embedding.facet_vocab_sizes)

    def _set_head(self, features, item_table, head, **explanations):
        """Names the symbolic tensors the scoring head reads; `explanations` (`[batch, seq, ...]`) join `scorer(explain=True)`."""
        # Plain tuples of KerasTensors: rebuilt by __init__ on deserialisation.
        object.__setattr__(self, "_head_wiring", (features, item_table, head))
        object.__setattr__(self, "_explanations", explanations)

    def _set_config(self, **config):
        """Stores constructor arguments as attributes; `get_config` returns them."""
        for key, value in config.items():
            setattr(self, key, value)
        self._config_keys = tuple(config)
        # The global dtype policy the layers were built under (e.g. "mixed_bfloat16"); saved, so
        # `from_config` rebuilds the same layers outside the `dtype_policy` block.
        self._build_policy = keras.config.dtype_policy().name

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable}
        if self._build_policy != "float32":
            config["dtype_policy"] = self._build_policy
        return {**config, **{key: getattr(self, key) for key in self._config_keys}}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        with dtype_policy(config.pop("dtype_policy", None)):
            return cls(**config)

    def _set_item_facets(self, item_facets):
        if item_facets is not None:
            self.item_embedding.set_item_facets(item_facets)

    @property
    def item_facets(self):
        """The items' facet labels, a list of `K` int32 numpy arrays `[num_items + 1]` (empty without facets)."""
        return [np.asarray(v) for v in self.item_embedding.facet_labels]

    def compile(self, optimizer=None, loss=None, **kwargs):
        """`Model.compile` with the paper's defaults: Adam(1e-3, 0.9, 0.999), full-softmax CE."""
        if optimizer is None:
            optimizer = keras.optimizers.Adam(learning_rate=1e-3, beta_1=0.9, beta_2=0.999)
        if loss is None:
            loss = MaskedSoftmaxCrossEntropy()
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def compile_from_config(self, config):
        # Restores the compiled state of a saved model (Keras skips this for
        # models that override `compile`).
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def set_item_embeddings(self, table, frozen=None):
        """Starts the item table from pre-trained embeddings (`keras_fame.models.catalogue.set_item_embeddings`)."""
        catalogue.set_item_embeddings(self, table, frozen=frozen)

    def with_new_items(self, content_rows, offsets=None, neighbours=10, item_facets=None):
        """A copy with new items appended (`keras_fame.models.catalogue.with_new_items`)."""
        return catalogue.with_new_items(self, content_rows, offsets, neighbours, item_facets)

    def impute_offsets(self, items, neighbours=10, donors=None, chunk_size=None):
        """Gives `items` their content neighbours' ID offsets (`keras_fame.models.catalogue.impute_offsets`)."""
        return catalogue.impute_offsets(self, items, neighbours, donors, chunk_size)

    def scorer(self, explain=False):
        """A functional model scoring only the newest position of each row.

        Shares this model's layers (and so its weights). Its input is
        `item_ids` `[batch, seq]`; its output a dict with `scores`
        `[batch, num_items + 1]` (padding column at `PADDING_SCORE`), and for
        FAME `head_weights` `[batch, heads]`, and with `explain=True` also
        `head_scores` `[batch, heads, num_items + 1]` and `router_weights`
        `[batch, heads, experts]` (Eq. 16), all at the newest position.
        """
        return retrieval.scorer(self, explain=explain)

    def score_factors(self):
        """A user-vector model and the item matrix whose product is the newest position's scores.

        SASRec's score is `F . x_v` (Eq. 6) and FAME's gated score is
        `x_v . sum_h g_h W_f^(h) F^(h)` (Eq. 11), so both are one dot product
        of a user vector with the item table (`keras_fame.models.retrieval`).
        Scoring the items a slice at a time from these factors is what keeps
        large-catalog ranking and evaluation memory-bounded.

        Returns:
            `(user_model, item_matrix)`: a `keras.Model` from `item_ids`
            `[batch, seq]` to float `[batch, hidden_dim]`, and the item table
            as numpy float32 `[num_items + 1, hidden_dim]`;
            `user @ item_matrix.T` equals `scorer()`'s scores up to float
            rounding (its padding column aside).
        """
        return retrieval.score_factors(self)

    def ranker(self, k=10, exclude_seen=True, explain=False, chunk_size=None, table_snapshot=None):
        """A functional model from raw histories to the top-k: the one ranking path.

        `item_ids` int32 `[batch, any length]` (oldest first; 0 and ids
        outside `1..num_items` are padding, anywhere in the row) ->
        `NewestItems` (the newest `max_len` valid ids, left-padded) -> the
        encoder -> `TopKRetrieval` (leaves out padding and, with
        `exclude_seen`, every id of the whole input row). `recommend()` and
        the SavedModel export (`keras_fame.export`) both run this model.

        Args:
            k: items per row, `1 <= k <= num_items`. Defaults to 10.
            exclude_seen: leave out the row's ids. Defaults to True.
            explain: FAME: also each head's own top-k. Defaults to False.
            chunk_size: optional int: score the items this many at a time
                with a running top-k (`chunked_top_k`), so no
                `[batch, num_items + 1]` score matrix exists. Defaults to
                None (one chunk).
            table_snapshot: optional `keras_fame.models.retrieval.ItemTableSnapshot`
                of this model: score against its stored table instead of
                computing the item table per call (the export passes one
                when the table is computed from facets or content).
                Defaults to None.

        Returns:
            A `keras.Model` whose output is a dict: `item_ids` int32 and
            `scores` float32 `[batch, k]`; for FAME `head_weights`
            `[batch, heads]` and, with `explain=True`, `head_item_ids` /
            `head_scores` `[batch, heads, k]`.
        """
        return retrieval.ranker(self, k=k, exclude_seen=exclude_seen, explain=explain, chunk_size=chunk_size,
                                table_snapshot=table_snapshot)

    def recommend(self, histories, k=10, exclude_seen=True, explain=False, batch_size=256, chunk_size=None):
        """Top-k next items for raw item-id histories of any length.

        Runs `ranker()` (the same model the SavedModel export serves) batch by
        batch, after checking the ids. Where the item table is computed
        (facets, content; `ItemEmbedding.computes_table`), it is computed once
        per call into an `ItemTableSnapshot` kept with the cached rankers,
        not once per batch.

        Args:
            histories: a list of sequences of item ids (oldest first, any
                length; longer than `max_len` keeps the most recent items), or
                an int array `[users, seq]` padded with 0 (anywhere).
            k: how many items to return.
            exclude_seen: leave out items already in each history (the whole
                history, not only the last `max_len`).
            explain: FAME only: also each head's own top-k.
            batch_size: rows scored at once.
            chunk_size: score the items this many at a time with a running
                top-k (large catalogs; see `ranker`).

        Returns:
            A dict of numpy arrays: `item_ids` `[users, k]`, `scores`
            `[users, k]`; for FAME `head_weights` `[users, heads]`, and with
            `explain=True`, `head_item_ids` / `head_scores` `[users, heads, k]`.

        Raises:
            ValueError: for ids outside `1..num_items` (0 only as padding in
                an array), or `k` larger than the number of items.
        """
        indptr, flat = histories_to_arrays(histories, self.num_items)
        # One ranker per setting, kept outside Keras' attribute tracking (it shares this model's
        # layers; it is not saved), so that repeated calls reuse its traced predict function.
        # A table computed from facets or content is snapshotted once per call, not once per batch.
        cache = self.__dict__.setdefault("_ranker_cache", {})
        if self.item_embedding.computes_table:
            snapshot = cache.get("snapshot")
            if snapshot is None:
                snapshot = cache["snapshot"] = retrieval.ItemTableSnapshot(self, name="recommend_table_snapshot")
            else:
                snapshot.refresh(self)
        setting = (k, exclude_seen, explain, chunk_size)
        if setting not in cache:
            cache[setting] = self.ranker(k=k, exclude_seen=exclude_seen, explain=explain, chunk_size=chunk_size,
                                         table_snapshot=cache.get("snapshot"))
        ranker = cache[setting]
        lengths = np.diff(indptr)
        results = {}
        for start in range(0, len(lengths), batch_size):
            stop = min(start + batch_size, len(lengths))
            width = self.max_len
            if exclude_seen:
                # The whole history is needed for the exclusion; widths in powers
                # of two, so that few distinct shapes are traced.
                longest = int(lengths[start:stop].max(initial=1))
                while width < longest:
                    width *= 2
            rows = pad_left(flat, indptr[start:stop], indptr[start + 1 : stop + 1], width).astype("int32")
            for name, value in predict_rows(ranker, rows).items():
                results.setdefault(name, []).append(value)
        return {name: np.concatenate(parts) for name, parts in results.items()}
