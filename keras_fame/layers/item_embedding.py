import keras
import numpy as np
from keras import ops

from keras_fame.validation import no_unknown_kwargs, positive_float, positive_int, rate

FACET_FUSIONS = ("slice", "sum")


@keras.saving.register_keras_serializable(package="keras_fame")
class ItemEmbedding(keras.layers.Layer):
    """Embeds a left-padded item-id sequence: item + learned position (§3.2).

    `E_i = Dropout(LayerNorm(x_{s_i} + p_i))`, zeroed at padded positions.
    Sequences longer than `max_len` keep their most recent `max_len` items.
    Positions are counted from the right: the newest item is always position
    `max_len - 1`, whatever the width of the batch, so a batch cut to its
    longest row (length bucketing) embeds exactly as the full-width batch.
    Ids outside `1..num_items` are treated as padding, so a bad id never
    becomes an out-of-range gather (which JAX would silently clamp).

    The item table (`item_embeddings`, `[num_items + 1, hidden_dim]`, row 0 =
    padding) is shared with the output layer (Eq. 6): the layer returns it,
    so a functional model can route it to its scoring layer. The LayerNorm
    on the input (as in BERT and RecBole's SASRec) is our choice; the paper
    names only the dropout.

    With `item_content=True` the table is the sum of a frozen content table
    (`content_embeddings`, non-trainable, e.g. projected item text, set
    with `set_weights` or `SequentialRecommender.set_item_embeddings`) and
    the trainable `item_embeddings`, which then start at zero and act as a
    learned per-item ID offset. An item that never gets gradient (a cold
    item, masked out of the training softmax) keeps offset 0 and is scored
    from its content alone; new items can be appended from their content
    (`SequentialRecommender.with_new_items`). `offset_max_norm` bounds
    each offset row's L2 norm (a bounded per-item delta around the content,
    as in "Let It Go? Not Quite", RecSys'25), so content-only items are
    scored on the same footing as trained ones. `offset_dropout` trains the
    sequence encoder to score by content too: at each training step every
    item's offset is dropped (set to 0, in the input and the output table
    alike) with that probability, so a row that is content only is an
    ordinary case during training, as in DropoutNet (Volkovs et al.,
    NeurIPS'17); why both exist is in `docs/design.md`. No rescaling: at inference
    every trained item keeps its whole offset. The content table itself is
    frozen at the scale it was given (RMS 0.02 for the text starts), while
    offsets grow in training; `learn_content_scale=True` adds one trainable
    scalar that multiplies the content table, so the model can give
    content-only rows the magnitude trained rows have.

    Args:
        num_items: int, `|V|`; ids are `1..num_items`.
        hidden_dim: int, `d`.
        max_len: int, `L`, the longest sequence.
        dropout: float, on the embedded sequence.
        layer_norm_epsilon: float.
        embeddings_initializer: initializer for both tables (with
            `item_content`, the item offsets start at zero regardless).
        item_content: bool, add the frozen content table (see above).
        offset_max_norm: optional float, with `item_content`: the largest
            L2 norm of an item's offset row (rows are rescaled to it).
        offset_dropout: float in `[0, 1)`, with `item_content`: the
            probability, per item and training step, that its offset is
            dropped (see above).
        seed: optional int, for the offset dropout.
        learn_content_scale: bool, with `item_content`: a trainable scalar
            (starting at 1) multiplies the content table.
        facet_vocab_sizes: optional list of `K` ints `C_k`, the number of
            labels of each item facet (e.g. brand, leaf category). The
            layer then holds, per facet, the items' labels (`facet_labels`,
            int32 `[num_items + 1]`, non-trainable, 0 = no label; set them
            with `set_item_facets`) and a label embedding `E_k`, and fuses
            them into the item table (see `facet_fusion`). Defaults to
            `None` (no facets).
        facet_fusion: how facet embeddings enter the table. `"slice"`
            (default): facet `k` owns the `k`-th of `K` equal column
            slices, `x_v = id_v + [E_1[l_1(v)] | ... | E_K[l_K(v)]]` with
            `E_k` of width `hidden_dim / K`, so a FAME head `h` whose item
            projection starts as the `h`-th slice reads facet `h`.
            `"sum"`: `x_v = id_v + sum_k E_k[l_k(v)]`, `E_k` of width
            `hidden_dim`. A label 0 contributes nothing. The fused table is
            both the input embedding and the scoring table (Eq. 6, 8).
        row_multiple: int, the table variables get `num_items + 1` rows rounded
            up to a multiple of this (spare rows are never read), so that they
            can be sharded by rows over that many devices
            (`keras_fame.distribution`). Defaults to 1.

    Call arguments:
        item_ids: int tensor `[batch, seq]`, 0 = padding.
        training: bool.
        return_facet_sequences: bool, also return `facet_sequences` of the
            embedded window (facet attention). Defaults to False.
        return_facet_agreement: bool, also return `facet_agreement` of the
            embedded window (FAME's `gate_facets`). Defaults to False.

    Returns:
        A tuple `(embedded, item_table, padding_mask)`: `[batch, seq', d]`,
        `[num_items + 1, d]` and bool `[batch, seq']` (true at real items),
        where `seq' = min(seq, max_len)`; with `return_facet_sequences`, a
        list of `K` tensors `[batch, seq', facet_width]` after them; with
        `return_facet_agreement`, a float `[batch, seq', K]` last.

    Example:
    >>> layer = ItemEmbedding(num_items=10, hidden_dim=4, max_len=5)
    >>> embedded, table, mask = layer(ops.convert_to_tensor([[0, 3, 7]]))
    >>> tuple(embedded.shape), tuple(table.shape), tuple(mask.shape)
    ((1, 3, 4), (11, 4), (1, 3))
    """

    def __init__(
        self,
        num_items,
        hidden_dim,
        max_len,
        dropout=0.0,
        layer_norm_epsilon=1e-8,
        embeddings_initializer=None,
        item_content=False,
        offset_max_norm=None,
        offset_dropout=0.0,
        seed=None,
        learn_content_scale=False,
        facet_vocab_sizes=None,
        facet_fusion="slice",
        row_multiple=1,
        **kwargs,
    ):
        no_unknown_kwargs(type(self).__name__, kwargs)
        super().__init__(**kwargs)
        num_items, hidden_dim = positive_int("num_items", num_items), positive_int("hidden_dim", hidden_dim)
        max_len, dropout = positive_int("max_len", max_len), rate("dropout", dropout)
        self.facet_vocab_sizes = None if not facet_vocab_sizes else tuple(int(c) for c in facet_vocab_sizes)
        if facet_fusion not in FACET_FUSIONS:
            raise ValueError(f"facet_fusion={facet_fusion!r}: expected one of {FACET_FUSIONS}")
        self.facet_fusion = facet_fusion
        self.row_multiple = positive_int("row_multiple", row_multiple)
        if self.facet_vocab_sizes:
            if any(c < 1 for c in self.facet_vocab_sizes):
                raise ValueError(f"facet_vocab_sizes={list(self.facet_vocab_sizes)}: every facet needs at least one label")
            if facet_fusion == "slice" and int(hidden_dim) % len(self.facet_vocab_sizes):
                raise ValueError(
                    f"facet_fusion='slice' splits hidden_dim={hidden_dim} into {len(self.facet_vocab_sizes)} equal "
                    "slices, one per facet: hidden_dim must be divisible by the number of facets"
                )
        if offset_max_norm is not None and not item_content:
            raise ValueError("offset_max_norm bounds the ID offset of item_content=True; the table has no offset")
        offset_dropout = rate("offset_dropout", offset_dropout)
        if offset_max_norm is not None:
            offset_max_norm = positive_float("offset_max_norm", offset_max_norm)
        if offset_dropout and not item_content:
            raise ValueError("offset_dropout drops the ID offset of item_content=True; the table has no offset")
        if learn_content_scale and not item_content:
            raise ValueError("learn_content_scale scales the content table of item_content=True; there is none")
        self.learn_content_scale = bool(learn_content_scale)
        self.num_items = int(num_items)
        self.hidden_dim = int(hidden_dim)
        self.max_len = int(max_len)
        self.dropout = float(dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.item_content = bool(item_content)
        self.offset_max_norm = None if offset_max_norm is None else float(offset_max_norm)
        self.offset_dropout = float(offset_dropout)
        self.seed = seed
        # Only a layer that drops offsets owns a seed generator, so the weight
        # lists of every other model stay as they were.
        self.offset_seed_generator = keras.random.SeedGenerator(seed) if self.offset_dropout else None
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer or keras.initializers.TruncatedNormal(stddev=0.02)
        )
        self.norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="norm", dtype=self.dtype_policy
        )
        self.embedding_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        # The tables are read without autocast: under a mixed policy the item table (which the float32
        # scoring heads read) stays float32; only the embedded sequence is cast to the compute dtype.
        init = lambda: keras.initializers.get(keras.initializers.serialize(self.embeddings_initializer))
        self.item_embeddings = self.add_weight(
            name="item_embeddings",
            shape=(self.table_rows, self.hidden_dim),
            initializer="zeros" if self.item_content else init(),
            autocast=False,
        )
        if self.item_content:
            self.content_embeddings = self.add_weight(
                name="content_embeddings",
                shape=(self.table_rows, self.hidden_dim),
                initializer="zeros",
                trainable=False,
                autocast=False,
            )
            if self.learn_content_scale:
                self.content_scale = self.add_weight(name="content_scale", shape=(), initializer="ones", autocast=False)
        self.position_embeddings = self.add_weight(
            name="position_embeddings", shape=(self.max_len, self.hidden_dim), initializer=init(), autocast=False
        )
        self.facet_labels, self.facet_embeddings = [], []
        for k, size in enumerate(self.facet_vocab_sizes or ()):
            self.facet_labels.append(
                self.add_weight(
                    name=f"facet_labels_{k}", shape=(self.num_items + 1,), dtype="int32", initializer="zeros",
                    trainable=False,
                )
            )
            self.facet_embeddings.append(
                self.add_weight(
                    name=f"facet_embeddings_{k}", shape=(size + 1, self.facet_width), initializer=init(), autocast=False
                )
            )
        self.norm.build((None, None, self.hidden_dim))

    @property
    def table_rows(self):
        """Rows of the table variables: `num_items + 1` rounded up to a multiple of `row_multiple`."""
        return -(-(self.num_items + 1) // self.row_multiple) * self.row_multiple

    @property
    def facet_width(self):
        """Width of each facet embedding: `hidden_dim / K` (`"slice"`) or `hidden_dim` (`"sum"`)."""
        if self.facet_fusion == "slice":
            return self.hidden_dim // len(self.facet_vocab_sizes)
        return self.hidden_dim

    def set_item_facets(self, item_facets):
        """Stores each item's facet labels: a list of `K` int arrays `[num_items + 1]` (0 = no label)."""
        arrays = check_item_facets(item_facets, self.num_items, self.facet_vocab_sizes)
        for variable, labels in zip(self.facet_labels, arrays):
            variable.assign(labels)

    def facet_rows(self, k):
        """Facet `k`'s label embeddings as rows of the item space, `[C_k + 1, hidden_dim]`.

        Row `c` is what label `c` adds to an item's row of the table (row 0,
        no label, is zero): `E_k` itself for `"sum"`, `E_k` in the `k`-th
        column slice and zeros elsewhere for `"slice"`. A scoring head
        scores these rows exactly as it scores items (the auxiliary facet
        loss, `keras_fame.losses.facet_cross_entropy`).
        """
        rows = ops.convert_to_tensor(self.facet_embeddings[k])
        keep = ops.cast(ops.arange(ops.shape(rows)[0]) > 0, rows.dtype)[:, None]
        rows = rows * keep
        if self.facet_fusion == "slice":
            width = self.facet_width
            rows = ops.pad(rows, [[0, 0], [k * width, self.hidden_dim - (k + 1) * width]])
        return rows

    def facet_table(self):
        """What the facets add to every item's row, `[num_items + 1, hidden_dim]`."""
        return self._fuse(self._facet_parts())

    def _facet_parts(self, item_ids=None):
        """Per facet, the label embeddings of `item_ids` (all items if None), `[..., facet_width]`; 0 at no label."""
        parts = []
        for labels, embeddings in zip(self.facet_labels, self.facet_embeddings):
            labels = ops.convert_to_tensor(labels)
            if item_ids is not None:
                labels = ops.take(labels, item_ids, axis=0)  # padding: item 0, label 0
            part = ops.take(ops.convert_to_tensor(embeddings), labels, axis=0)
            parts.append(part * ops.cast(labels > 0, part.dtype)[..., None])
        return parts

    def _fuse(self, parts):
        """The facet parts as rows of the item space: concatenated (`"slice"`) or summed (`"sum"`)."""
        if self.facet_fusion == "slice":
            return ops.concatenate(parts, axis=-1)
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    def facet_sequences(self, item_ids):
        """The items' facet label embeddings (a list of `K` tensors `[batch, seq, facet_width]`; 0 at no label).

        `item_ids` are the window `call` embeds (sanitised, newest `max_len`).
        For facet attention (`MoEQueryAttention(facet_dims=...)`).
        """
        return [ops.cast(part, self.compute_dtype) for part in self._facet_parts(item_ids)]

    def facet_agreement(self, item_ids):
        """How far each position's item shares its facet labels with the items before it, `[batch, seq, K]` (ours).

        `a_k(t) = #{j < t : l_k(s_j) = l_k(s_t)} / #{j < t : s_j > 0}`: the
        share of the earlier items of the window (padding left out) that
        carry the facet-`k` label of the item at `t`; 0 where that item has
        no facet-`k` label or nothing precedes it. A history that stays
        within one brand has `a_brand` near 1 at its newest item, one that
        stays within a category but changes brands has `a_leaf` high and
        `a_brand` low: a signal of which facet the user follows, computed
        from the labels alone (no weights), `O(seq^2 K)` per row.

        Args:
            item_ids: int `[batch, seq]`, the window `call` embeds (0 = padding).

        Returns:
            float32 `[batch, seq, K]`; `[batch, seq, 0]` without facets.
        """
        item_ids = ops.cast(item_ids, "int32")
        seq = ops.shape(item_ids)[1]
        earlier = ops.expand_dims(ops.tril(ops.ones((seq, seq), "float32"), k=-1), 0)  # [1, t, j]: j < t
        real = ops.cast(item_ids > 0, "float32")[:, None, :]  # [b, 1, j]
        count = ops.sum(earlier * real, axis=-1)  # [b, t]
        shares = []
        for labels in self.facet_labels:
            seq_labels = ops.take(ops.convert_to_tensor(labels), item_ids, axis=0)  # [b, t]; padding: label 0
            labelled = ops.cast(seq_labels > 0, "float32")
            same = ops.cast(ops.equal(seq_labels[:, :, None], seq_labels[:, None, :]), "float32")  # [b, t, j]
            # An item j sharing t's label is labelled wherever t is: only t's label needs checking.
            matches = ops.sum(same * earlier, axis=-1) * labelled  # [b, t]
            shares.append(matches / ops.maximum(count, 1.0))
        if not shares:
            return ops.zeros((ops.shape(item_ids)[0], seq, 0), "float32")
        return ops.stack(shares, axis=-1)

    def call(self, item_ids, training=None, return_facet_sequences=False, return_facet_agreement=False):
        item_ids = sanitize_item_ids(item_ids, self.num_items)[:, -self.max_len :]
        padding_mask = item_ids > 0
        width = ops.shape(item_ids)[1]
        positions = ops.arange(self.max_len - width, self.max_len, dtype="int32")
        table = self.item_table(training=training)
        if self.draws_whole_table(training):
            embedded = ops.take(table, item_ids, axis=0)  # the rows of this call's one offset draw
        else:
            # Only the window's rows: where the table output is not read (a sampled softmax), no [V, d] work.
            embedded = self.rows(item_ids)
        embedded = embedded + ops.take(ops.convert_to_tensor(self.position_embeddings), positions, axis=0)[None]
        embedded = self.embedding_dropout(self.norm(ops.cast(embedded, self.compute_dtype)), training=training)
        embedded = embedded * ops.cast(padding_mask, embedded.dtype)[..., None]
        outputs = (embedded, table, padding_mask)
        if return_facet_sequences:
            outputs += (self.facet_sequences(item_ids),)
        if return_facet_agreement:
            outputs += (self.facet_agreement(item_ids),)
        return outputs

    @property
    def computes_table(self):
        """True where `item_table()` is computed (facets, content, spare rows), not a bare variable read.

        Serving then scores against a snapshot of it
        (`keras_fame.models.retrieval.ItemTableSnapshot`) instead of
        rebuilding it per request.
        """
        spare_rows = self.item_embeddings.shape[0] != self.num_items + 1
        return bool(self.item_content or self.facet_vocab_sizes or spare_rows)

    def draws_whole_table(self, training):
        """True where a call's rows must come from its one `item_table(training)`, not from `rows`.

        That is training with `offset_dropout`: the offsets' random draw
        covers the whole table at once, and the input side and the scored
        rows must share it.
        """
        return bool(training and self.offset_dropout)

    def rows(self, item_ids):
        """The rows of `item_table()` at `item_ids` (int, any shape), `[..., d]`, reading only those rows.

        Equal to `take(item_table(), item_ids)`: each row is its ID row
        (norm-bounded with `offset_max_norm`), plus its content row and its
        facet labels' embeddings, gathered per id, so the cost grows with
        the ids asked for, not with the catalogue, and the gradient of the
        ID table stays row-sparse. No offset is dropped here (see
        `draws_whole_table`).
        """
        item_ids = ops.cast(item_ids, "int32")
        rows = ops.take(ops.convert_to_tensor(self.item_embeddings), item_ids, axis=0)
        if self.offset_max_norm is not None:
            norms = ops.sqrt(ops.sum(ops.square(rows), axis=-1, keepdims=True))
            rows = rows * ops.minimum(1.0, self.offset_max_norm / ops.maximum(norms, 1e-12))
        if self.item_content:
            content = ops.take(ops.convert_to_tensor(self.content_embeddings), item_ids, axis=0)
            if self.learn_content_scale:
                content = content * ops.cast(self.content_scale, content.dtype)
            rows = rows + content
        if self.facet_vocab_sizes:
            rows = rows + ops.cast(self._fuse(self._facet_parts(item_ids)), rows.dtype)
        return rows

    def item_table(self, training=False):
        """The `[num_items + 1, d]` table the model embeds and scores with.

        With `training=True` and `offset_dropout`, a random set of items has
        its offset dropped (a fresh draw at every call).
        """
        rows = self.num_items + 1  # the variables may hold spare rows (`row_multiple`), never read
        table = ops.convert_to_tensor(self.item_embeddings)
        if self.item_embeddings.shape[0] != rows:
            # Sliced only when there are spare rows: a slice's gradient is dense, while a lookup's gradient
            # through the bare variable stays row-sparse on TensorFlow (what `LazyAdam` updates row-wise).
            table = table[:rows]
        if self.offset_max_norm is not None:
            norms = ops.sqrt(ops.sum(ops.square(table), axis=-1, keepdims=True))
            table = table * ops.minimum(1.0, self.offset_max_norm / ops.maximum(norms, 1e-12))
        if training and self.offset_dropout:
            draw = keras.random.uniform((self.num_items + 1, 1), seed=self.offset_seed_generator)
            table = table * ops.cast(draw >= self.offset_dropout, table.dtype)
        if self.item_content:
            content = ops.convert_to_tensor(self.content_embeddings)[:rows]
            if self.learn_content_scale:
                content = content * ops.cast(self.content_scale, content.dtype)
            table = table + content
        if self.facet_vocab_sizes:
            table = table + ops.cast(self.facet_table(), table.dtype)
        return table

    def compute_output_spec(self, item_ids, training=None, return_facet_sequences=False, return_facet_agreement=False):
        batch, seq = item_ids.shape
        if seq is not None:
            seq = min(seq, self.max_len)
        outputs = (
            keras.KerasTensor((batch, seq, self.hidden_dim), dtype=self.compute_dtype),
            keras.KerasTensor((self.num_items + 1, self.hidden_dim), dtype=self.variable_dtype),
            keras.KerasTensor((batch, seq), dtype="bool"),
        )
        if return_facet_sequences:
            facets = [keras.KerasTensor((batch, seq, self.facet_width), dtype=self.compute_dtype)
                      for _ in self.facet_vocab_sizes or ()]
            outputs += (facets,)
        if return_facet_agreement:
            outputs += (keras.KerasTensor((batch, seq, len(self.facet_vocab_sizes or ())), dtype="float32"),)
        return outputs

    def get_config(self):
        return {
            **super().get_config(),
            "num_items": self.num_items,
            "hidden_dim": self.hidden_dim,
            "max_len": self.max_len,
            "dropout": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
            "item_content": self.item_content,
            "offset_max_norm": self.offset_max_norm,
            "offset_dropout": self.offset_dropout,
            "seed": self.seed,
            "learn_content_scale": self.learn_content_scale,
            "facet_vocab_sizes": None if self.facet_vocab_sizes is None else list(self.facet_vocab_sizes),
            "facet_fusion": self.facet_fusion,
            "row_multiple": self.row_multiple,
        }


def check_item_facets(item_facets, num_items, facet_vocab_sizes=None):
    """Validates per-item facet labels; returns a list of int32 arrays `[num_items + 1]` (row 0 set to 0).

    Args:
        item_facets: a list of `K` integer arrays of length `num_items + 1`
            (index = item id, 0 = no label), or an int array `[num_items + 1, K]`.
        num_items: int.
        facet_vocab_sizes: optional expected `C_k`; labels must be in `0..C_k`.

    Raises:
        ValueError: naming the facet and the offending item for a wrong
            length, a non-integer or negative label, or a label above `C_k`.
    """
    if isinstance(item_facets, np.ndarray) and item_facets.ndim == 2:
        item_facets = [item_facets[:, k] for k in range(item_facets.shape[1])]
    arrays = []
    for k, labels in enumerate(item_facets):
        labels = np.asarray(labels)
        if labels.shape != (num_items + 1,):
            raise ValueError(f"item_facets[{k}] has shape {labels.shape}, expected [num_items + 1] = ({num_items + 1},)")
        if labels.dtype.kind not in "iu":
            if labels.dtype.kind != "f" or not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
                raise ValueError(f"item_facets[{k}] must hold integer label ids, got dtype {labels.dtype}")
        labels = labels.astype(np.int64)
        labels[0] = 0  # row 0 is padding, whatever it holds
        bad = np.flatnonzero(labels < 0)
        if len(bad):
            raise ValueError(f"item_facets[{k}][{bad[0]}] = {labels[bad[0]]}: labels are 0 (none) or positive")
        if facet_vocab_sizes is not None and k < len(facet_vocab_sizes):
            over = np.flatnonzero(labels > facet_vocab_sizes[k])
            if len(over):
                raise ValueError(
                    f"item_facets[{k}][{over[0]}] = {labels[over[0]]} is above the facet's {facet_vocab_sizes[k]} labels"
                )
        arrays.append(labels.astype(np.int32))
    if facet_vocab_sizes is not None and len(arrays) != len(facet_vocab_sizes):
        raise ValueError(f"item_facets has {len(arrays)} facets, the layer was built for {len(facet_vocab_sizes)}")
    return arrays


def facet_vocab_sizes_of(item_facets):
    """`[C_1, ..., C_K]`, the largest label of each facet (at least 1)."""
    return [max(1, int(np.max(labels))) for labels in item_facets]


def sanitize_item_ids(item_ids, num_items):
    """Maps ids outside `1..num_items` to padding (0), as int32."""
    item_ids = ops.cast(item_ids, "int32")
    valid = ops.logical_and(item_ids > 0, item_ids <= num_items)
    return ops.where(valid, item_ids, ops.zeros_like(item_ids))
