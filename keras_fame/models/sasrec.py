import keras

from keras_fame.layers import ItemScores
from keras_fame.layers.item_embedding import facet_vocab_sizes_of
from keras_fame.models.backbone import BackboneConfig
from keras_fame.models.sequential_recommender import SequentialRecommender, scoring_dtype
from keras_fame.validation import divisible, positive_int


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
        num_heads: int, attention heads per block. Defaults to 1.
        item_embeddings: optional `[num_items + 1, hidden_dim]` pre-trained
            table (e.g. `keras_fame.pretraining.pca_item_table` or
            `pretrain_item_embeddings`): the start of the trainable table,
            or with `item_content` the frozen content. Not part of the
            config: the weights carry it.
        item_facets: optional list of `K` int arrays `[num_items + 1]`, each
            item's label of each facet (label ids `1..C_k`, 0 = no label;
            e.g. `keras_fame.data.read_item_facets(...).labels`). Their
            embeddings are fused into the item table (`ItemEmbedding`,
            `facet_fusion`). Not part of the config: the weights carry them
            (`.keras` files and the export keep them).
        facet_vocab_sizes: list of `K` ints, labels per facet. Defaults to
            each facet's largest label in `item_facets`.
        **kwargs: the backbone settings, `keras_fame.models.BackboneConfig`'s
            fields (`hidden_dim`, `num_blocks`, `max_len`, `dropout`, ...,
            with its defaults), and `keras.Model`'s `name`, `trainable`,
            `dtype`.

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

    def __init__(self, num_items, num_heads=1, item_embeddings=None, item_facets=None, facet_vocab_sizes=None,
                 **kwargs):
        backbone, kwargs = BackboneConfig.split("SASRec", kwargs)
        positive_int("num_items", num_items)
        divisible("hidden_dim", backbone.hidden_dim, "num_heads", positive_int("num_heads", num_heads))
        if item_facets is not None and facet_vocab_sizes is None:
            facet_vocab_sizes = facet_vocab_sizes_of(item_facets)

        # === Layers ===
        self.item_embedding = backbone.item_embedding(num_items, facet_vocab_sizes)
        facet_dims = self._facet_dims(backbone.facet_attention, self.item_embedding)
        self.transformer_blocks = backbone.blocks(backbone.num_blocks, num_heads, facet_dims)
        self.item_scores = ItemScores(dtype=scoring_dtype(), name="item_scores")

        # === Functional model ===
        item_ids = keras.Input(shape=(None,), dtype="int32", name="item_ids")
        features, item_table, _, _, _ = self._embed_and_encode(item_ids, backbone.num_blocks, backbone.facet_attention)
        scores = self.item_scores(features, item_table)
        super().__init__(inputs=item_ids, outputs=scores, **kwargs)
        self._set_head(features, item_table, self.item_scores)

        # === Config ===
        self._set_config(
            num_items=int(num_items),
            num_heads=int(num_heads),
            **backbone.config(),
            facet_vocab_sizes=self.item_embedding.get_config()["facet_vocab_sizes"],
        )
        if item_embeddings is not None:
            self.set_item_embeddings(item_embeddings)
        self._set_item_facets(item_facets)
