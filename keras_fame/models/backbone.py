"""`BackboneConfig`: the settings SASRec and FAME share (the item table, its embedding, the SASRec blocks)."""

import dataclasses

import keras

from keras_fame.layers import ItemEmbedding, TransformerBlock
from keras_fame.validation import MODEL_KWARGS, positive_float, positive_int, rate


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """The backbone settings of `SASRec` and `FAME`; each field is a keyword argument of both constructors.

    `FAME.from_sasrec` takes them from the SASRec it transplants
    (`BackboneConfig.of`), and the experiment pipeline passes them through.

    Attributes:
        hidden_dim: int, `d`. Defaults to 64.
        num_blocks: int, `B`; FAME counts its MoE block among them. Defaults to 2.
        max_len: int, `L`; longer inputs keep their newest `L` items. Defaults to 50.
        dropout: float in `[0, 1)`, on embeddings, residual branches and
            attention weights. Defaults to 0.2.
        intermediate_dim: int, the blocks' FFN inner width. Defaults to
            None: `hidden_dim` (Eq. 5).
        layer_norm_epsilon: float. Defaults to 1e-8.
        activation: FFN activation of the SASRec blocks, `"relu"` (Eq. 5)
            or e.g. `"gelu"` (BERT4Rec-family codebases). Defaults to `"relu"`.
        kernel_initializer: initializer of the blocks' kernels (e.g.
            `keras.initializers.RandomNormal(stddev=0.02)`). Defaults to
            `"glorot_uniform"`.
        item_content: bool, the item table is a frozen content table (e.g.
            projected item text) plus a trainable per-item ID offset that
            starts at 0 (`ItemEmbedding`); needed for cold-start items.
            Defaults to False.
        offset_max_norm: optional float, with `item_content`: the largest L2
            norm of an item's ID offset. Defaults to None.
        offset_dropout: float in `[0, 1)`, with `item_content`: the
            probability per item and training step that its ID offset is
            dropped (`ItemEmbedding`). Defaults to 0.
        learn_content_scale: bool, with `item_content`: a trainable scalar
            multiplies the content table. Defaults to False.
        facet_fusion: `"slice"` or `"sum"`: how item facets enter the item
            table (`ItemEmbedding`). Defaults to `"slice"`.
        facet_attention: bool, every attention head also attends by the
            items' facets (`MoEQueryAttention`; needs item facets). Defaults
            to False.
        row_multiple: int, the item tables' rows are padded to a multiple
            of this, so they can be sharded by rows over that many devices
            (`keras_fame.distribution`). Defaults to 1.
    """

    hidden_dim: int = 64
    num_blocks: int = 2
    max_len: int = 50
    dropout: float = 0.2
    intermediate_dim: int = None
    layer_norm_epsilon: float = 1e-8
    activation: str = "relu"
    kernel_initializer: object = "glorot_uniform"
    item_content: bool = False
    offset_max_norm: float = None
    offset_dropout: float = 0.0
    learn_content_scale: bool = False
    facet_fusion: str = "slice"
    facet_attention: bool = False
    row_multiple: int = 1

    def __post_init__(self):
        """Refuses impossible sizes and rates (`ValueError` naming the field)."""
        for name in ("hidden_dim", "num_blocks", "max_len", "row_multiple"):
            positive_int(name, getattr(self, name))
        rate("dropout", self.dropout)
        positive_float("layer_norm_epsilon", self.layer_norm_epsilon)
        if self.intermediate_dim is not None:
            positive_int("intermediate_dim", self.intermediate_dim)

    @classmethod
    def split(cls, owner, kwargs):
        """`(BackboneConfig, the other keywords)` from a constructor's `**kwargs`.

        Raises:
            TypeError: naming a keyword that is neither a backbone field nor
                a `keras.Model` argument (`name`, `trainable`, `dtype`).
        """
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in kwargs if k not in fields and k not in MODEL_KWARGS)
        if unknown:
            raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}")
        return cls(**{k: v for k, v in kwargs.items() if k in fields}), {k: v for k, v in kwargs.items() if k not in fields}

    @classmethod
    def of(cls, model):
        """The backbone of a built `SASRec`/`FAME`."""
        config = model.get_config()
        return cls(**{f.name: config[f.name] for f in dataclasses.fields(cls) if f.name in config})

    def config(self):
        """The fields as `get_config` records them (the FFN width resolved, the initializer serialised)."""
        values = dataclasses.asdict(self)
        values["intermediate_dim"] = int(self.intermediate_dim or self.hidden_dim)
        values["kernel_initializer"] = keras.initializers.serialize(keras.initializers.get(self.kernel_initializer))
        return values

    def item_embedding(self, num_items, facet_vocab_sizes=None):
        """The `ItemEmbedding` of these settings."""
        return ItemEmbedding(
            num_items=num_items, hidden_dim=self.hidden_dim, max_len=self.max_len, dropout=self.dropout,
            layer_norm_epsilon=self.layer_norm_epsilon, item_content=self.item_content,
            offset_max_norm=self.offset_max_norm, offset_dropout=self.offset_dropout,
            learn_content_scale=self.learn_content_scale, facet_vocab_sizes=facet_vocab_sizes,
            facet_fusion=self.facet_fusion, row_multiple=self.row_multiple, name="item_embedding",
        )

    def blocks(self, count, num_heads, facet_dims=None):
        """`count` SASRec `TransformerBlock`s of these settings with `num_heads` heads."""
        return [
            TransformerBlock(
                hidden_dim=self.hidden_dim, num_heads=num_heads, intermediate_dim=self.intermediate_dim,
                dropout=self.dropout, layer_norm_epsilon=self.layer_norm_epsilon, activation=self.activation,
                kernel_initializer=keras.initializers.get(self.kernel_initializer), facet_dims=facet_dims,
                name=f"transformer_block_{i}",
            )
            for i in range(count)
        ]
