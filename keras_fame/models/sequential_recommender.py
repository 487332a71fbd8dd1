"""What SASRec and FAME share: the functional skeleton, scoring and inference."""

import numbers

import keras
import numpy as np

from keras_fame.data.split import pad_left
from keras_fame.layers import ItemEmbedding, LastPosition, TransformerBlock
from keras_fame.layers.item_embedding import check_item_facets
from keras_fame.layers.item_scores import mask_padding_scores, score_items
from keras_fame.losses import MaskedSoftmaxCrossEntropy, facet_cross_entropy
from keras_fame.validation import MODEL_KWARGS, no_unknown_kwargs, positive_float, positive_int, rate
from keras_fame.utils import dtype_policy


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

    @staticmethod
    def _check_backbone(owner, kwargs, num_items, hidden_dim, num_blocks, max_len, dropout, intermediate_dim,
                        layer_norm_epsilon):
        """Refuses impossible backbone sizes (`ValueError` naming the argument) and unknown keywords (`TypeError`)."""
        no_unknown_kwargs(owner, kwargs, MODEL_KWARGS)
        positive_int("num_items", num_items)
        positive_int("hidden_dim", hidden_dim)
        positive_int("num_blocks", num_blocks)
        positive_int("max_len", max_len)
        rate("dropout", dropout)
        if intermediate_dim is not None:
            positive_int("intermediate_dim", intermediate_dim)
        positive_float("layer_norm_epsilon", layer_norm_epsilon)

    def _embed_and_encode(self, item_ids, num_blocks):
        """Shared embedding + the first `num_blocks` SASRec blocks (symbolic)."""
        x, item_table, padding_mask = self.item_embedding(item_ids)
        for block in self.transformer_blocks[:num_blocks]:
            x = block(x, padding_mask=padding_mask)
        return x, item_table, padding_mask

    def _set_head(self, features, item_table, head):
        # Plain tuple of KerasTensors: rebuilt by __init__ on deserialisation.
        object.__setattr__(self, "_head_wiring", (features, item_table, head))

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

    def _make_blocks(
        self, count, hidden_dim, num_heads, intermediate_dim, dropout, layer_norm_epsilon, activation="relu",
        kernel_initializer="glorot_uniform",
    ):
        return [
            TransformerBlock(
                hidden_dim=hidden_dim,
                num_heads=num_heads,
                intermediate_dim=intermediate_dim,
                dropout=dropout,
                layer_norm_epsilon=layer_norm_epsilon,
                activation=activation,
                kernel_initializer=keras.initializers.get(kernel_initializer),
                name=f"transformer_block_{i}",
            )
            for i in range(count)
        ]

    def _make_embedding(
        self, num_items, hidden_dim, max_len, dropout, layer_norm_epsilon, item_content=False, offset_max_norm=None,
        offset_dropout=0.0, learn_content_scale=False, facet_vocab_sizes=None, facet_fusion="slice",
    ):
        return ItemEmbedding(
            num_items=num_items,
            hidden_dim=hidden_dim,
            max_len=max_len,
            dropout=dropout,
            layer_norm_epsilon=layer_norm_epsilon,
            item_content=item_content,
            offset_max_norm=offset_max_norm,
            offset_dropout=offset_dropout,
            learn_content_scale=learn_content_scale,
            facet_vocab_sizes=facet_vocab_sizes,
            facet_fusion=facet_fusion,
            name="item_embedding",
        )

    def _set_item_facets(self, item_facets):
        if item_facets is not None:
            self.item_embedding.set_item_facets(item_facets)

    @property
    def item_facets(self):
        """The items' facet labels, a list of `K` int32 numpy arrays `[num_items + 1]` (empty without facets)."""
        return [np.asarray(v) for v in self.item_embedding.facet_labels]

    def set_item_embeddings(self, table, frozen=None):
        """Starts the item table from pre-trained embeddings (e.g. from item text).

        Args:
            table: `[num_items + 1, hidden_dim]`; row 0 (padding) is set to 0.
            frozen: where the table goes. `False`: into the trainable item
                embeddings (a start that training moves). `True` (needs
                `item_content=True`): into the frozen content table, with
                the trainable per-item offsets reset to 0. Default: `True`
                exactly when the model has `item_content`.
        """
        layer = self.item_embedding
        table = np.array(table, dtype="float32")
        expected = (self.num_items + 1, self.hidden_dim)
        if table.shape != expected:
            raise ValueError(f"item table of shape {table.shape}, expected [num_items + 1, hidden_dim] = {expected}")
        if not np.isfinite(table).all():
            raise ValueError("the item table has non-finite entries")
        table[0] = 0.0
        frozen = layer.item_content if frozen is None else bool(frozen)
        if frozen and not layer.item_content:
            raise ValueError("frozen=True needs a model built with item_content=True")
        if frozen:
            layer.content_embeddings.assign(table)
            layer.item_embeddings.assign(np.zeros_like(table))
        else:
            layer.item_embeddings.assign(table)

    def with_new_items(self, content_rows, offsets=None, neighbours=10, item_facets=None):
        """A copy of this model with items `num_items + 1 ..` appended (cold start).

        The new items' rows come from `content_rows` `[new, hidden_dim]`
        (e.g. their text through the same pre-trainer or PCA as the
        catalog). With `item_content=True` they enter the frozen content
        table, with an ID offset given by `offsets`; otherwise they become
        the new rows of the item table. Every other weight is copied. The
        result can be saved, evaluated and exported like any model.

        Args:
            content_rows: float `[new, hidden_dim]`.
            offsets: with `item_content`: `None` (offset 0, exactly like a
                trained model's never-seen items), `"neighbours"` (each new
                item takes the similarity-weighted mean offset of its
                `neighbours` content-nearest catalog items with a trained
                offset, `impute_offsets`), or an array `[new, hidden_dim]`.
            neighbours: int, k for `offsets="neighbours"`.
            item_facets: for a model built with facets: the new items'
                labels, a list of `K` int arrays `[new]` (0 = no label), so
                that a new item enters with its facet embeddings even
                without an ID history. Defaults to `None` (no labels).

        Returns:
            A new model of the same class with `num_items + new` items.
        """
        rows = np.asarray(content_rows, dtype="float32")
        if rows.ndim != 2 or rows.shape[1] != self.hidden_dim or len(rows) == 0:
            raise ValueError(f"content_rows must be [new_items, {self.hidden_dim}], got {rows.shape}")
        if not np.isfinite(rows).all():
            raise ValueError("content_rows has non-finite entries")
        content = self.item_embedding.item_content
        if offsets is not None and not content:
            raise ValueError("offsets are the ID offsets of item_content=True; this model has a plain item table")
        extra_offsets = np.zeros_like(rows)
        if isinstance(offsets, str):
            if offsets != "neighbours":
                raise ValueError(f'offsets={offsets!r}: expected None, "neighbours" or an array')
        elif offsets is not None:
            extra_offsets = np.asarray(offsets, dtype="float32")
            if extra_offsets.shape != rows.shape or not np.isfinite(extra_offsets).all():
                raise ValueError(f"offsets must be finite and of the shape of content_rows {rows.shape}")
        layer = self.item_embedding
        new_labels = [np.zeros(len(rows), np.int64) for _ in layer.facet_labels]
        if item_facets is not None:
            if not layer.facet_labels:
                raise ValueError("item_facets given, but this model was built without facets")
            if len(item_facets) != len(layer.facet_labels):
                raise ValueError(f"item_facets has {len(item_facets)} facets, the model has {len(layer.facet_labels)}")
            for k, labels in enumerate(item_facets):
                labels = np.asarray(labels)
                if labels.shape != (len(rows),):
                    raise ValueError(f"item_facets[{k}] has shape {labels.shape}, expected ({len(rows)},), one per new item")
                new_labels[k] = labels
            # The same checks as the constructor's, on the new rows (a row 0 in front, which they ignore).
            check_item_facets([np.concatenate([[0], labels]) for labels in new_labels], len(rows), layer.facet_vocab_sizes)
        config = self.get_config()
        config["num_items"] = self.num_items + len(rows)
        grown = type(self).from_config(config)
        # Rows appended per item-indexed weight: offsets (with content), facet labels, or the content rows.
        extra_rows = {v.path: labels for v, labels in zip(layer.facet_labels, new_labels)}
        if content:
            extra_rows[layer.item_embeddings.path] = extra_offsets
        for old, new in zip(self.weights, grown.weights):
            value = np.asarray(old)
            if value.shape != tuple(new.shape):
                value = np.concatenate([value, np.asarray(extra_rows.get(old.path, rows), dtype=value.dtype)])
            new.assign(value)
        if isinstance(offsets, str):
            # The new rows' offsets are still 0, so impute_offsets' default donors are exactly the trained items.
            grown.impute_offsets(np.arange(self.num_items + 1, grown.num_items + 1), neighbours=neighbours)
        return grown

    def impute_offsets(self, items, neighbours=10, donors=None, chunk_size=None):
        """Gives `items` the ID offsets of their content-nearest trained items (cold start).

        With `item_content=True` an item that training never reached keeps
        offset 0 and competes from its content alone, while every trained
        item carries a learned offset (its collaborative signal, popularity
        included): measured on Toys, such items then almost never reach a
        user's top 10 against the whole catalog (`results/README.md`). This
        sets each item's offset to the mean of the effective offsets of its
        `neighbours` nearest donors by cosine similarity of the content rows,
        weighted by the positive part of the similarity (uniform if none is
        positive): a new item borrows the behaviour of the items whose text
        it resembles, the usual content-to-collaborative mapping of the
        cold-start literature in its simplest, training-free form. Changes
        the model in place; content rows and other items are untouched.

        Args:
            items: int ids in `1..num_items` whose offsets are replaced.
            neighbours: int, k.
            donors: int ids to borrow from (default: every item outside
                `items` whose offset is not zero).
            chunk_size: how many of `items` are compared with the donors at
                once; the peak is `chunk_size x len(donors)` float32 similarities
                (default: at most 2^25 of them, 128 MB, so a catalog of 10^6
                donors goes 33 items at a time).

        Returns:
            float32 `[len(items), hidden_dim]`, the offsets set.
        """
        layer = self.item_embedding
        if not layer.item_content:
            raise ValueError("impute_offsets needs a model built with item_content=True (it has no ID offsets)")
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        if len(items) == 0 or items.min() < 1 or items.max() > self.num_items:
            raise ValueError(f"items must be non-empty ids in 1..{self.num_items}")
        content = np.asarray(layer.content_embeddings, dtype=np.float32)
        raw = np.asarray(layer.item_embeddings, dtype=np.float32)
        scale = float(np.asarray(layer.content_scale)) if layer.learn_content_scale else 1.0
        effective = np.asarray(keras.ops.convert_to_numpy(layer.item_table()), np.float32) - scale * content
        if donors is None:
            donors = np.setdiff1d(np.flatnonzero(np.abs(raw).sum(axis=1) > 0), items)
            donors = donors[donors > 0]
        donors = np.asarray(donors, dtype=np.int64).reshape(-1)
        if len(donors) == 0 or donors.min() < 1 or donors.max() > self.num_items:
            raise ValueError(f"donors must be non-empty ids in 1..{self.num_items} (no item has a trained offset?)")
        k = min(int(neighbours), len(donors))
        if k < 1:
            raise ValueError(f"neighbours={neighbours} must be at least 1")
        if chunk_size is None:
            chunk_size = max(1, min(4096, 2**25 // len(donors)))
        unit = content / np.maximum(np.linalg.norm(content, axis=1, keepdims=True), 1e-12)
        donor_unit, donor_offsets = unit[donors], effective[donors]
        result = np.empty((len(items), self.hidden_dim), np.float32)
        for start in range(0, len(items), chunk_size):
            similarity = unit[items[start : start + chunk_size]] @ donor_unit.T
            nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
            weights = np.maximum(np.take_along_axis(similarity, nearest, axis=1), 0.0)
            total = weights.sum(axis=1, keepdims=True)
            weights = np.where(total > 0, weights / np.maximum(total, 1e-12), 1.0 / k)
            result[start : start + chunk_size] = np.einsum("qk,qkd->qd", weights, donor_offsets[nearest])
        raw[items] = result
        layer.item_embeddings.assign(raw)
        return result

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

    def scorer(self, explain=False):
        """A functional model scoring only the newest position of each row.

        Shares this model's layers (and so its weights). Its input is
        `item_ids` `[batch, seq]`; its output a dict with `scores`
        `[batch, num_items + 1]` (padding column at `PADDING_SCORE`), and for
        FAME `head_weights` `[batch, heads]`, and with `explain=True` also
        `head_scores` `[batch, heads, num_items + 1]`.
        """
        features, item_table, head = self._head_wiring
        last = LastPosition(name="last_position")(features)
        outputs = _NewestPositionHead(head, explain, name="scorer_head", dtype=head.dtype_policy)(last, item_table)
        return keras.Model(self.inputs, outputs, name=f"{self.name}_scorer")

    def score_factors(self):
        """A user-vector model and the item matrix whose product is the newest position's scores.

        SASRec's scores are `F . x_v` (Eq. 6); FAME's gated scores are one dot
        product too, `[g_1 F^(1) | ... | g_H F^(H)] . [x_v W_f^(1) | ...]`
        (Eq. 11). Scoring the items a slice at a time from these factors is
        what keeps large-catalog ranking and evaluation memory-bounded.

        Returns:
            `(user_model, item_matrix)`: a `keras.Model` from `item_ids`
            `[batch, seq]` to float `[batch, D]`, and a numpy float32
            `[num_items + 1, D]`; `user @ item_matrix.T` equals `scorer()`'s
            scores up to float rounding (its padding column aside).
        """
        features, item_table, head = self._head_wiring
        last = LastPosition(name="last_position")(features)
        user = _UserVector(head, name="user_vector", dtype=head.dtype_policy)(last)
        table = self.item_embedding.item_table(training=False)
        item_matrix = keras.ops.convert_to_numpy(head.item_matrix(table))
        return keras.Model(self.inputs, user, name=f"{self.name}_user_vectors"), item_matrix.astype("float32")

    def ranker(self, k=10, exclude_seen=True, explain=False, chunk_size=None):
        """A functional model from raw histories to the top-k: the one ranking path.

        `item_ids` int32 `[batch, any length]` (oldest first; 0 and ids
        outside `1..num_items` are padding, anywhere in the row) ->
        `NewestItems` (the newest `max_len` valid ids, left-padded) ->
        `scorer()` -> `HistoryTopK` (leaves out padding and, with
        `exclude_seen`, every id of the whole input row). `recommend()` and
        the SavedModel export (`keras_fame.export`) both run this model.

        With `chunk_size` (for large catalogs), the items are scored
        `chunk_size` at a time with a running top-k (`chunked_top_k`), so no
        `[batch, num_items + 1]` score matrix exists: the peak is
        `batch x (chunk_size + k)` scores (per head with `explain`), besides
        the item table itself. Same result as without, up to float rounding
        of near-ties.

        Returns:
            A `keras.Model` whose output is a dict: `item_ids` int32 and
            `scores` float32 `[batch, k]`; for FAME `head_weights`
            `[batch, heads]` and, with `explain=True`, `head_item_ids` /
            `head_scores` `[batch, heads, k]`.
        """
        from keras_fame.layers.ranking import HistoryTopK, NewestItems

        if not 1 <= k <= self.num_items:
            raise ValueError(f"k={k} must be between 1 and num_items={self.num_items}")
        item_ids = keras.Input(shape=(None,), dtype="int32", name="item_ids")
        window = NewestItems(self.num_items, self.max_len, name="newest_items")(item_ids)
        features, item_table, head = self._head_wiring
        score_policy = head.dtype_policy  # the layers that read scores compute as the head does (float32 when mixed)
        if chunk_size is not None and int(chunk_size) < self.num_items + 1:
            if k > int(chunk_size):
                raise ValueError(f"k={k} must not exceed chunk_size={chunk_size}")
            encoder = keras.Model(self.inputs, [LastPosition(name="last_position")(features), item_table])
            last, table = encoder(window)
            chunked = _ChunkedRankingHead(
                head, k, int(chunk_size), exclude_seen, explain, name="chunked_top_k", dtype=score_policy
            )
            outputs = chunked(last, table, item_ids)
            return keras.Model(item_ids, outputs, name=f"{self.name}_ranker")
        out = self.scorer(explain=explain)(window)
        top_ids, top_scores = HistoryTopK(k, exclude_seen, name="top_k", dtype=score_policy)(out["scores"], item_ids)
        outputs = {"item_ids": top_ids, "scores": top_scores}
        if "head_weights" in out:
            outputs["head_weights"] = keras.ops.cast(out["head_weights"], "float32")
        if "head_scores" in out:
            head_top = HistoryTopK(k, exclude_seen, name="head_top_k", dtype=score_policy)(out["head_scores"], item_ids)
            outputs["head_item_ids"], outputs["head_scores"] = head_top
        return keras.Model(item_ids, outputs, name=f"{self.name}_ranker")

    def recommend(self, histories, k=10, exclude_seen=True, explain=False, batch_size=256, chunk_size=None):
        """Top-k next items for raw item-id histories of any length.

        Runs `ranker()` (the same model the SavedModel export serves) batch by
        batch, after checking the ids.

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
        indptr, flat = _histories_to_arrays(histories, self.num_items)
        # One ranker per setting, kept outside Keras' attribute tracking (it shares this model's
        # layers; it is not saved), so that repeated calls reuse its traced predict function.
        cache = self.__dict__.setdefault("_ranker_cache", {})
        setting = (k, exclude_seen, explain, chunk_size)
        if setting not in cache:
            cache[setting] = self.ranker(k=k, exclude_seen=exclude_seen, explain=explain, chunk_size=chunk_size)
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
            for name, value in ranker.predict_on_batch(rows).items():
                results.setdefault(name, []).append(np.asarray(value))
        return {name: np.concatenate(parts) for name, parts in results.items()}


class RecommenderTrainer(keras.Model):
    """Base of models that train a built `SASRec`/`FAME` with another objective; the wrapped weights train.

    Holds the wrapped `recommender`, an `encoder` from item ids to its
    `(features, item_table)` and its scoring `head`, all sharing the
    recommender's layers. Ranking callbacks (`FullRankingEvaluation`) use the
    recommender's `scorer()`. Subclasses define `call`. Save the wrapped
    model, not the trainer. See `keras_fame.sampled_softmax.SampledSoftmaxTrainer`
    and `keras_fame.training.LastPositionTrainer`.
    """

    def __init__(self, recommender, facet_loss_weight=0.0, **kwargs):
        super().__init__(**kwargs)
        features, item_table, head = recommender._head_wiring
        if not float(facet_loss_weight) >= 0:
            raise ValueError(f"facet_loss_weight={facet_loss_weight} must be a non-negative number")
        if facet_loss_weight and not recommender.item_embedding.facet_labels:
            raise ValueError("facet_loss_weight > 0 needs a model built with item_facets")
        self.facet_loss_weight = float(facet_loss_weight)
        self.recommender = recommender
        self.encoder = keras.Model(recommender.inputs, [features, item_table], name="encoder")
        self.head = head
        # Every weight belongs to the already built recommender, so the trainer is built too: a resumed
        # `fit` (`keras_fame.training.TrainingCheckpoint`) loads its checkpoint before any batch runs.
        self.built = True

    def scorer(self, explain=False):
        return self.recommender.scorer(explain=explain)

    @property
    def num_items(self):
        return self.recommender.num_items

    def _outputs(self, logits, facets):
        """What `call` returns: the logits, or with the facet loss a dict of logits and facet logits."""
        if not self.facet_loss_weight:
            return logits
        embedding = self.recommender.item_embedding
        rows = [embedding.facet_rows(k) for k in range(len(embedding.facet_labels))]
        return {"logits": logits, "facet_logits": self.head.facet_logits(facets, rows)}

    def _score_positions(self, features, item_table, training=None):
        """Full-softmax logits `[..., num_items + 1]` and the facet vectors, from the head's parts."""
        user, items, facets, _ = score_factors_of(self.head, features, item_table, training=training)
        return mask_padding_scores(score_items(user, items)), facets

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The recommendation loss, plus `facet_loss_weight` times the facet loss (`facet_cross_entropy`)."""
        if not isinstance(y_pred, dict):
            return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        loss = super().compute_loss(x=x, y=y, y_pred=y_pred["logits"], sample_weight=sample_weight, training=training)
        targets = keras.ops.cast(y, "int32")
        labels = [keras.ops.take(v, targets, axis=0) for v in self.recommender.item_embedding.facet_labels]
        return loss + self.facet_loss_weight * facet_cross_entropy(y_pred["facet_logits"], labels)


class AllPositionsTrainer(RecommenderTrainer):
    """Trains a built `SASRec`/`FAME` on every position with the full softmax, like `model.fit`, plus the facet loss.

    `model.fit` on the recommender itself trains the recommendation loss
    only; this trainer computes the same logits from the head's parts
    (`user_vectors`, `item_matrix`) and, with `facet_loss_weight > 0`, adds
    the auxiliary facet loss (`keras_fame.losses.facet_cross_entropy`), for
    which the targets are needed. Save the wrapped model, not the trainer.

    Example:
    >>> from keras_fame.models import SASRec
    >>> model = SASRec(num_items=20, hidden_dim=8, max_len=5, item_facets=[np.arange(21) % 3])
    >>> trainer = AllPositionsTrainer(model, facet_loss_weight=0.5)
    >>> trainer.compile(optimizer="adam", loss=MaskedSoftmaxCrossEntropy())
    >>> x = np.array([[0, 1, 2, 3, 4]], "int32")
    >>> float(trainer.train_on_batch(x, np.array([[0, 2, 3, 4, 5]]))) > 0
    True
    """

    def call(self, inputs, training=None):
        features, item_table = self.encoder(inputs, training=training)
        return self._outputs(*self._score_positions(features, item_table, training=training))


class _NewestPositionHead(keras.layers.Layer):
    """Runs a model's scoring head with the scorer's outputs (not saved, not registered).

    Keras requires a layer to return the same output structure on every
    symbolic call, and the training graph calls the head for scores only;
    this wrapper calls `head.call` directly, sharing its weights.
    """

    def __init__(self, head, explain, **kwargs):
        super().__init__(**kwargs)
        self.head = head
        self.explain = explain

    def call(self, features, item_table):
        if not self.head.has_gates:
            return {"scores": self.head.call(features, item_table)}
        outputs = self.head.call(
            features, item_table, return_gates=True, return_head_scores=self.explain, training=False
        )
        names = ("scores", "head_weights", "head_scores")
        return dict(zip(names, outputs))


def score_factors_of(head, features, item_table, training=None):
    """A scoring head's scores as one dot product: `(user [..., D], items [V + 1, D], facets, gates)`.

    SASRec (`ItemScores`): the features and the item table (Eq. 6), the
    features again as facet vectors, no gates (None). FAME
    (`FacetGatedHead`): the gated facets and the projected table (Eq. 11),
    with `F` and `g`.
    """
    user, facets, gates = head.user_vectors(features, training=training)
    return user, head.item_matrix(item_table), facets, gates


class _UserVector(keras.layers.Layer):
    """The newest position's user vector: SASRec's features, FAME's gated facets (not saved, not registered)."""

    def __init__(self, head, **kwargs):
        super().__init__(**kwargs)
        self.head = head

    def call(self, features):
        return self.head.user_vectors(features, training=False)[0]


class _ChunkedRankingHead(keras.layers.Layer):
    """The scoring head + a running top-k over item chunks (not saved, not registered; see `ranker`).

    SASRec's and FAME's scores are one dot product between a user vector and
    an item matrix (FAME: the gated facets `[g_1 F^(1) | ... | g_H F^(H)]`
    against the projected table, Eq. 11), so the items can be scored a slice
    at a time.
    """

    def __init__(self, head, k, chunk_size, exclude_seen, explain, **kwargs):
        super().__init__(**kwargs)
        self.head, self.k, self.chunk_size = head, k, chunk_size
        self.exclude_seen, self.explain = exclude_seen, explain

    def call(self, features, item_table, history):
        from keras import ops

        from keras_fame.layers.ranking import chunked_top_k

        history = history if self.exclude_seen else None
        columns = int(item_table.shape[0])

        user, items, facets, gates = score_factors_of(self.head, features, item_table, training=False)
        ids, scores = chunked_top_k(
            lambda lo, hi: ops.matmul(user, ops.transpose(items[lo:hi])), columns, self.k, history, self.chunk_size
        )
        outputs = {"item_ids": ids, "scores": scores}
        if gates is None:  # SASRec
            return outputs
        outputs["head_weights"] = ops.cast(gates, "float32")
        if self.explain:
            per_head = ops.reshape(items, (-1, self.head.num_heads, self.head.head_dim))
            outputs["head_item_ids"], outputs["head_scores"] = chunked_top_k(
                lambda lo, hi: ops.einsum("bhe,che->bhc", facets, per_head[lo:hi]), columns, self.k, history,
                self.chunk_size,
            )
        return outputs


def _as_item_ids(values, where):
    """An int64 array of `values`, refusing what is not an integer id (fractions, NaN, inf, strings, booleans).

    `where(index)` names the position of a refused value in messages.
    """
    array = np.asarray(values)
    if isinstance(values, (list, tuple)) and any(isinstance(v, (bool, np.bool_)) for v in values):
        array = np.asarray(values, dtype=object)  # numpy would read True as 1: refuse it below instead
    if array.dtype.kind in "iu":
        return array.astype(np.int64)
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array) | (array != np.round(array))
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{where(index)} holds {float(array[index])!r}, not an integer item id")
        return array.astype(np.int64)
    objects = np.asarray(values, dtype=object)
    for index in np.ndindex(objects.shape):
        value = objects[index]
        value = value.item() if isinstance(value, np.generic) else value
        integral = isinstance(value, numbers.Integral) or (
            isinstance(value, float) and np.isfinite(value) and value.is_integer()
        )
        if isinstance(value, bool) or not integral:
            raise ValueError(f"{where(index)} holds {value!r}, not an integer item id")
    return objects.astype(np.int64)


def _histories_to_arrays(histories, num_items):
    """Validated histories -> (CSR indptr, items) of the full histories.

    Raises `ValueError` naming the row (and column) of a value that is not
    an item id in `1..num_items` (0 is padding in an array), and for an
    empty history: a model ranks from what a user did, so a user with no
    history has no answer here (serve popular items instead).
    """
    if isinstance(histories, np.ndarray):
        if histories.ndim != 2:
            raise ValueError(f"a history array must be 2-D [users, seq], got shape {histories.shape}")
        arr = _as_item_ids(histories, lambda i: f"histories[{i[0]}, {i[1]}]")
        bad = (arr < 0) | (arr > num_items)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"histories[{r}, {c}] = {arr[r, c]} is not an item id in 0..{num_items}")
        # Non-zero entries in row order: the full history of each row.
        lengths = np.count_nonzero(arr, axis=1)
        flat = arr[arr != 0]
    else:
        if isinstance(histories, (str, bytes)):
            raise ValueError("histories must be a list of item-id sequences, not a string")
        histories = list(histories)
        if len(histories) == 0:
            raise ValueError("no histories given")
        rows = []
        for r, history in enumerate(histories):
            if isinstance(history, (str, bytes)):
                raise ValueError(f"history {r} is the string {history!r}, not a sequence of item ids")
            row = _as_item_ids(history, lambda i, r=r: f"history {r}" + (f" at position {i[0]}" if i else "")).reshape(-1)
            rows.append(row)
        lengths = np.array([len(row) for row in rows], dtype=np.int64)
        flat = np.concatenate(rows)
        bad = np.flatnonzero((flat < 1) | (flat > num_items))
        if len(bad):
            row = int(np.searchsorted(np.cumsum(lengths), bad[0], side="right"))
            raise ValueError(f"history {row} holds {flat[bad[0]]}, not an item id in 1..{num_items}")
    empty = np.flatnonzero(lengths == 0)
    if len(empty):
        raise ValueError(
            f"history {int(empty[0])} is empty: the model ranks from a user's history, so it has no answer for a user "
            "without one (recommend popular items to such users instead)"
        )
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    return indptr, flat
