import keras
from keras import ops


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
    (`SequentialRecommender.with_new_items`). With a free offset, trained
    items drift far from their content and an offset-0 item cannot compete
    (measured: cold items never reach the top 10, `results/README.md`);
    `offset_max_norm` bounds each offset row's L2 norm (a bounded per-item
    delta around the content, as in "Let It Go? Not Quite", RecSys'25), so
    content-only items are scored on the same footing. That bound alone
    did not get cold items ranked either: the sequence encoder still learns
    to read items by their offsets. `offset_dropout` trains it to score by
    content too: at each training step every item's offset is dropped (set
    to 0, in the input and the output table alike) with that probability,
    so a row that is content only is an ordinary case during training, as
    in DropoutNet (Volkovs et al., NeurIPS'17). No rescaling: at inference
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

    Call arguments:
        item_ids: int tensor `[batch, seq]`, 0 = padding.
        training: bool.

    Returns:
        A tuple `(embedded, item_table, padding_mask)`: `[batch, seq', d]`,
        `[num_items + 1, d]` and bool `[batch, seq']` (true at real items),
        where `seq' = min(seq, max_len)`.

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
        **kwargs,
    ):
        super().__init__(**kwargs)
        if offset_max_norm is not None and not item_content:
            raise ValueError("offset_max_norm bounds the ID offset of item_content=True; the table has no offset")
        if not 0.0 <= float(offset_dropout) < 1.0:
            raise ValueError(f"offset_dropout={offset_dropout} must be in [0, 1)")
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
        init = lambda: keras.initializers.get(keras.initializers.serialize(self.embeddings_initializer))
        self.item_embeddings = self.add_weight(
            name="item_embeddings",
            shape=(self.num_items + 1, self.hidden_dim),
            initializer="zeros" if self.item_content else init(),
        )
        if self.item_content:
            self.content_embeddings = self.add_weight(
                name="content_embeddings",
                shape=(self.num_items + 1, self.hidden_dim),
                initializer="zeros",
                trainable=False,
            )
            if self.learn_content_scale:
                self.content_scale = self.add_weight(name="content_scale", shape=(), initializer="ones")
        self.position_embeddings = self.add_weight(
            name="position_embeddings", shape=(self.max_len, self.hidden_dim), initializer=init()
        )
        self.norm.build((None, None, self.hidden_dim))

    def call(self, item_ids, training=None):
        item_ids = sanitize_item_ids(item_ids, self.num_items)[:, -self.max_len :]
        padding_mask = item_ids > 0
        width = ops.shape(item_ids)[1]
        positions = ops.arange(self.max_len - width, self.max_len, dtype="int32")
        table = self.item_table(training=training)
        embedded = ops.take(table, item_ids, axis=0)
        embedded = embedded + ops.take(self.position_embeddings, positions, axis=0)[None]
        embedded = self.embedding_dropout(self.norm(embedded), training=training)
        embedded = embedded * ops.cast(padding_mask, embedded.dtype)[..., None]
        return embedded, table, padding_mask

    def item_table(self, training=False):
        """The `[num_items + 1, d]` table the model embeds and scores with.

        With `training=True` and `offset_dropout`, a random set of items has
        its offset dropped (a fresh draw at every call).
        """
        table = ops.convert_to_tensor(self.item_embeddings)
        if self.offset_max_norm is not None:
            norms = ops.sqrt(ops.sum(ops.square(table), axis=-1, keepdims=True))
            table = table * ops.minimum(1.0, self.offset_max_norm / ops.maximum(norms, 1e-12))
        if training and self.offset_dropout:
            draw = keras.random.uniform((self.num_items + 1, 1), seed=self.offset_seed_generator)
            table = table * ops.cast(draw >= self.offset_dropout, table.dtype)
        if self.item_content:
            content = ops.convert_to_tensor(self.content_embeddings)
            if self.learn_content_scale:
                content = content * ops.cast(self.content_scale, content.dtype)
            table = table + content
        return table

    def compute_output_spec(self, item_ids, training=None):
        batch, seq = item_ids.shape
        if seq is not None:
            seq = min(seq, self.max_len)
        return (
            keras.KerasTensor((batch, seq, self.hidden_dim), dtype=self.compute_dtype),
            keras.KerasTensor((self.num_items + 1, self.hidden_dim), dtype=self.variable_dtype),
            keras.KerasTensor((batch, seq), dtype="bool"),
        )

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
        }


def sanitize_item_ids(item_ids, num_items):
    """Maps ids outside `1..num_items` to padding (0), as int32."""
    item_ids = ops.cast(item_ids, "int32")
    valid = ops.logical_and(item_ids > 0, item_ids <= num_items)
    return ops.where(valid, item_ids, ops.zeros_like(item_ids))
