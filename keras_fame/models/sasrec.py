import keras

from keras_fame.layers import ItemScores
from keras_fame.layers.item_embedding import facet_vocab_sizes_of
from keras_fame.validation import positive_int
from keras_fame.models.sequential_recommender import SequentialRecommender, scoring_dtype


@keras.saving.register_keras_serializable(package="keras_fame")
class SASRec(SequentialRecommender):
    """SASRec, the self-attentive sequential recommender FAME builds on (§3.2).

    A functional model: shared item embedding (0 = padding) + learned
    positions, `num_blocks` causal post-LayerNorm transformer blocks, and
    scores `x_v . F_t` against the same item table (Eq. 6) for every
    position. Trained with full-softmax cross-entropy over all items on
    every non-padded position (`compile()` defaults to that and Adam 1e-3).

    Args:
        num_items: int, `|V|`; ids `1..num_items`, 0 = padding.
        hidden_dim: int, `d`.
        num_blocks: int, `B`.
        num_heads: int, attention heads per block.
        max_len: int, `L`; longer inputs keep their newest `L` items.
        dropout: float, on embeddings, residual branches and attention.
        intermediate_dim: int, FFN inner width; default `hidden_dim` (Eq. 5).
        layer_norm_epsilon: float.
        item_content: bool, the item table is a frozen content table (e.g.
            projected item text) plus a trainable per-item offset starting
            at 0 (`ItemEmbedding`); needed for cold-start items.
        item_embeddings: optional `[num_items + 1, hidden_dim]` pre-trained
            table (e.g. `keras_fame.pretraining.pca_item_table` or
            `pretrain_item_embeddings`): the start of the trainable table,
            or with `item_content` the frozen content. Not part of the
            config: the weights carry it.
        offset_max_norm: optional float: with `item_content`, the largest
            L2 norm of an item's ID offset (a bounded delta, for cold start).
        offset_dropout: float: with `item_content`, the probability per
            item and training step that its ID offset is dropped, so the
            model learns to score content-only (cold) items (`ItemEmbedding`).
        learn_content_scale: bool: with `item_content`, a trainable scalar
            multiplies the frozen content table (`ItemEmbedding`).
        item_facets: optional list of `K` int arrays `[num_items + 1]`, each
            item's label of each facet (label ids `1..C_k`, 0 = no label;
            e.g. `keras_fame.data.read_item_facets(...).labels`). Their
            embeddings are fused into the item table (`ItemEmbedding`,
            `facet_fusion`). Not part of the config: the weights carry them
            (`.keras` files and the export keep them).
        facet_vocab_sizes: list of `K` ints, labels per facet; defaults to
            each facet's largest label in `item_facets`.
        facet_fusion: `"slice"` (default) or `"sum"`, see `ItemEmbedding`.
        row_multiple: int, the item tables' rows are padded to a multiple of
            this, so they can be sharded by rows over that many devices
            (`ItemEmbedding`, `keras_fame.distribution`). Defaults to 1.
        facet_attention: bool, every attention head also attends by the
            items' facets (`MoEQueryAttention`'s facet attention; needs
            `item_facets`). Defaults to False.
        activation: FFN activation of the SASRec blocks (`"relu"`, Eq. 5;
            `"gelu"` as in BERT4Rec-family codebases).
        kernel_initializer: initializer of the SASRec blocks' kernels
            (e.g. `keras.initializers.RandomNormal(stddev=0.02)`).

    Call arguments:
        item_ids: int32 `[batch, seq]`, left-padded, oldest first.

    Returns:
        Scores `[batch, min(seq, max_len), num_items + 1]` (logits; column 0
        is padding and never wins).

    Example:
    >>> model = SASRec(num_items=100, hidden_dim=16, max_len=10)
    >>> tuple(model(np.ones((2, 10), "int32")).shape)
    (2, 10, 101)

    Reference:
        Kang, McAuley. Self-Attentive Sequential Recommendation (ICDM 2018).
    """

    def __init__(
        self,
        num_items,
        hidden_dim=64,
        num_blocks=2,
        num_heads=1,
        max_len=50,
        dropout=0.2,
        intermediate_dim=None,
        layer_norm_epsilon=1e-8,
        item_content=False,
        item_embeddings=None,
        offset_max_norm=None,
        offset_dropout=0.0,
        learn_content_scale=False,
        activation="relu",
        kernel_initializer="glorot_uniform",
        item_facets=None,
        facet_vocab_sizes=None,
        facet_fusion="slice",
        row_multiple=1,
        facet_attention=False,
        **kwargs,
    ):
        self._check_backbone(
            "SASRec", kwargs, num_items, hidden_dim, num_blocks, max_len, dropout, intermediate_dim, layer_norm_epsilon
        )
        positive_int("num_heads", num_heads)
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim={hidden_dim} is not divisible by num_heads={num_heads}")
        if item_facets is not None and facet_vocab_sizes is None:
            facet_vocab_sizes = facet_vocab_sizes_of(item_facets)

        # === Layers ===
        self.item_embedding = self._make_embedding(
            num_items, hidden_dim, max_len, dropout, layer_norm_epsilon, item_content, offset_max_norm,
            offset_dropout, learn_content_scale, facet_vocab_sizes, facet_fusion, row_multiple,
        )
        self.transformer_blocks = self._make_blocks(
            num_blocks, hidden_dim, num_heads, intermediate_dim, dropout, layer_norm_epsilon, activation,
            kernel_initializer, self._facet_dims(facet_attention, self.item_embedding),
        )
        self.item_scores = ItemScores(dtype=scoring_dtype(), name="item_scores")

        # === Functional model ===
        item_ids = keras.Input(shape=(None,), dtype="int32", name="item_ids")
        features, item_table, _, _ = self._embed_and_encode(item_ids, num_blocks, facet_attention)
        scores = self.item_scores(features, item_table)
        super().__init__(inputs=item_ids, outputs=scores, **kwargs)
        self._set_head(features, item_table, self.item_scores)

        # === Config ===
        self._set_config(
            num_items=int(num_items),
            hidden_dim=int(hidden_dim),
            num_blocks=int(num_blocks),
            num_heads=int(num_heads),
            max_len=int(max_len),
            dropout=float(dropout),
            intermediate_dim=int(intermediate_dim or hidden_dim),
            layer_norm_epsilon=float(layer_norm_epsilon),
            item_content=bool(item_content),
            offset_max_norm=None if offset_max_norm is None else float(offset_max_norm),
            offset_dropout=float(offset_dropout),
            learn_content_scale=bool(learn_content_scale),
            activation=activation,
            kernel_initializer=keras.initializers.serialize(keras.initializers.get(kernel_initializer)),
            facet_vocab_sizes=self.item_embedding.get_config()["facet_vocab_sizes"],
            facet_fusion=facet_fusion,
            row_multiple=self.item_embedding.row_multiple,
            facet_attention=bool(facet_attention),
        )
        if item_embeddings is not None:
            self.set_item_embeddings(item_embeddings)
        self._set_item_facets(item_facets)
