import dataclasses

import keras
import numpy as np  # noqa: F401  (the docstring example uses it)

from keras_fame.layers import FacetGatedHead, FacetMoEBlock, MoEQueryAttention
from keras_fame.layers.item_embedding import facet_vocab_sizes_of
from keras_fame.models.backbone import BackboneConfig
from keras_fame.models.sequential_recommender import SequentialRecommender, scoring_dtype
from keras_fame.validation import divisible, positive_float, positive_int
from keras_fame.utils import dtype_policy


@keras.saving.register_keras_serializable(package="keras_fame")
class FAME(SequentialRecommender):
    """FAME: SASRec whose last block is replaced by facet-aware MoE heads.

    The first `num_blocks - 1` blocks are SASRec's. The last one is
    `MoEQueryAttention` (Eq. 12-17: per head, `num_experts` query experts,
    shared keys/values, a router) whose per-head outputs `f^(h)` get a
    residual with the head's slice of the block input and a LayerNorm over
    `d'` (the paper leaves this part implicit; see `FAME_SPEC.md`), then
    `FacetGatedHead` (Eq. 7-11): a shared `FFN'`, per-head item projections
    and a softmax gate over heads, scored as one matmul against the item
    table. `num_experts=1` is FAME w/o MoE; `num_heads=1, num_experts=1`
    is SASRec up to the extra `W_f` projection (which starts as the
    identity, see `HeadSliceIdentity`).

    Train it from scratch or, as the paper does (§4.4.2), from a trained
    SASRec with `FAME.from_sasrec`.

    Args:
        num_items: int, `|V|`; ids `1..num_items`, 0 = padding.
        num_heads: int, `H` (facets) of the MoE block; `hidden_dim` must be
            divisible by it. Defaults to 4; alias `heads`.
        num_experts: int, `N` query experts per head. Defaults to 8; alias
            `experts`. Giving both a name and its alias with different
            values raises `ValueError`.
        block_heads: int, attention heads of the earlier SASRec blocks.
            Defaults to `num_heads`; `from_sasrec` keeps SASRec's, so the
            copied blocks compute exactly what they did in SASRec.
        item_projection_initializer: initializer of `W_f` (Eq. 8). Defaults
            to `HeadSliceIdentity()` (`H` times the identity, split by head),
            so FAME starts from SASRec's tied-embedding score; the paper
            does not say; `"glorot_uniform"` is the random start
            (`docs/design.md`).
        gate_temperature: float, divides the gate logits (Eq. 10; ours,
            the paper's gate has 1). Defaults to 1.0.
        gate_facets: bool, the gate also reads, at every position, how far
            the item there shares each facet label with the items before it
            (`ItemEmbedding.facet_agreement`, `K` numbers in `[0, 1]`), through
            a `[K, H]` kernel that starts at zero (`FacetGatedHead`'s
            `gate_context_dim`; ours). Needs item facets. Defaults to False.
        moe_layout: `"block"`: the MoE block is one `FacetMoEBlock` layer;
            `"flat"`: the same computation as separate layers, the layout of
            `.keras` files saved before that layer existed (they load with it
            automatically). Defaults to `"block"`.
        item_embeddings, item_facets, facet_vocab_sizes: as for `SASRec`.
        **kwargs: the backbone settings, `keras_fame.models.BackboneConfig`'s
            fields (`hidden_dim`, `num_blocks` counting the MoE block,
            `max_len`, `dropout`, ...; with `facet_attention` the MoE block
            attends by facets too), and `keras.Model`'s `name`, `trainable`,
            `dtype`.

    Call arguments:
        item_ids: int32 `[batch, seq]`, left-padded, oldest first.

    Returns:
        Scores `[batch, min(seq, max_len), num_items + 1]` (logits).

    Example:
    >>> model = FAME(num_items=100, hidden_dim=16, num_heads=2, num_experts=3, max_len=10)
    >>> tuple(model(np.ones((2, 10), "int32")).shape)
    (2, 10, 101)
    >>> model.recommend([[3, 5, 7]], k=5)["head_weights"].shape
    (1, 2)

    Reference:
        Liu, Zhang, Long. Facet-Aware Multi-Head Mixture-of-Experts Model for
        Sequential Recommendation (2025).
    """

    has_gates = True

    def __init__(
        self,
        num_items,
        num_heads=None,
        num_experts=None,
        block_heads=None,
        item_projection_initializer=None,
        gate_temperature=1.0,
        gate_facets=False,
        moe_layout="block",
        heads=None,
        experts=None,
        item_embeddings=None,
        item_facets=None,
        facet_vocab_sizes=None,
        **kwargs,
    ):
        backbone, kwargs = BackboneConfig.split("FAME", kwargs)
        positive_int("num_items", num_items)
        # Short aliases, as in `keras_fame.FAME(num_items, heads=4, experts=8)`.
        num_heads = _alias("num_heads", num_heads, "heads", heads, default=4)
        num_experts = _alias("num_experts", num_experts, "experts", experts, default=8)
        positive_float("gate_temperature", gate_temperature)
        block_heads = int(block_heads or num_heads)
        positive_int("block_heads", block_heads)
        divisible("hidden_dim", backbone.hidden_dim, "num_heads", num_heads)
        head_dim = backbone.hidden_dim // num_heads
        if item_facets is not None and facet_vocab_sizes is None:
            facet_vocab_sizes = facet_vocab_sizes_of(item_facets)

        # === Layers ===
        self.item_embedding = backbone.item_embedding(num_items, facet_vocab_sizes)
        facet_dims = self._facet_dims(backbone.facet_attention, self.item_embedding)
        if not isinstance(gate_facets, bool):
            raise ValueError(f"gate_facets={gate_facets!r} must be True or False")
        if gate_facets and not self.item_embedding.facet_vocab_sizes:
            raise ValueError("gate_facets=True feeds the gate the items' facet labels: give item_facets (or facet_vocab_sizes)")
        if moe_layout not in ("block", "flat"):
            raise ValueError(f"moe_layout={moe_layout!r} is not 'block' or 'flat'")
        if facet_dims and moe_layout != "block":
            raise ValueError("facet_attention needs moe_layout='block'")
        self.transformer_blocks = backbone.blocks(backbone.num_blocks - 1, block_heads, facet_dims)
        dropout, epsilon = backbone.dropout, backbone.layer_norm_epsilon
        if moe_layout == "block":
            self.moe_block = FacetMoEBlock(
                num_heads=num_heads, head_dim=head_dim, num_experts=num_experts, dropout=dropout,
                layer_norm_epsilon=epsilon, facet_dims=facet_dims, name="moe_block",
            )
            self.moe_attention = self.moe_block.attention
        else:
            # The same computation as separate layers: how FAME was saved before `FacetMoEBlock`
            # existed (its weights live at other paths); `from_config` picks it for such files.
            self.moe_attention = MoEQueryAttention(
                num_heads=num_heads, head_dim=head_dim, num_experts=num_experts, dropout=dropout, name="moe_attention"
            )
            self.split_heads = keras.layers.Reshape((-1, num_heads, head_dim), name="split_heads")
            self.moe_dropout = keras.layers.Dropout(dropout, name="moe_dropout")
            self.moe_residual = keras.layers.Add(name="moe_residual")
            self.moe_norm = keras.layers.LayerNormalization(epsilon=epsilon, name="moe_norm")
        self.facet_head = FacetGatedHead(
            num_heads=num_heads, head_dim=head_dim, dropout=dropout, layer_norm_epsilon=epsilon,
            item_projection_initializer=item_projection_initializer,
            gate_temperature=gate_temperature,
            gate_context_dim=len(self.item_embedding.facet_vocab_sizes) if gate_facets else 0,
            dtype=scoring_dtype(),
            name="facet_head",
        )

        # === Functional model ===
        item_ids = keras.Input(shape=(None,), dtype="int32", name="item_ids")
        x, item_table, padding_mask, facet_sequences, agreement = self._embed_and_encode(
            item_ids, backbone.num_blocks - 1, backbone.facet_attention, facet_agreement=gate_facets
        )
        if moe_layout == "block":
            features, router = self.moe_block(  # [b, t, H, d']
                x, padding_mask=padding_mask, facet_sequences=facet_sequences, return_router_weights=True
            )
        else:
            heads_out, router = self.moe_attention(x, padding_mask=padding_mask, return_router_weights=True)
            features = self.moe_norm(self.moe_residual([self.split_heads(x), self.moe_dropout(heads_out)]))
        head_input = (features, agreement) if gate_facets else features
        scores = self.facet_head(head_input, item_table)
        super().__init__(inputs=item_ids, outputs=scores, **kwargs)
        self._set_head(head_input, item_table, self.facet_head, router_weights=router)

        # === Config ===
        self._set_config(
            num_items=int(num_items),
            num_heads=int(num_heads),
            num_experts=int(num_experts),
            block_heads=block_heads,
            item_projection_initializer=keras.initializers.serialize(self.facet_head.item_projection_initializer),
            gate_temperature=float(gate_temperature),
            gate_facets=gate_facets,
            moe_layout=moe_layout,
            **backbone.config(),
            facet_vocab_sizes=self.item_embedding.get_config()["facet_vocab_sizes"],
        )
        if item_embeddings is not None:
            self.set_item_embeddings(item_embeddings)
        self._set_item_facets(item_facets)

    @classmethod
    def from_config(cls, config):
        # Files saved before the MoE block became `FacetMoEBlock` carry no `moe_layout`:
        # rebuild them with the separate layers their weights were saved from.
        return super().from_config({"moe_layout": "flat", **config})

    @classmethod
    def from_sasrec(cls, sasrec, num_heads=None, num_experts=8, dropout=None, query_noise=0.01, seed=0, **kwargs):
        """Builds FAME from a trained SASRec, as the paper's pipeline (§4.4.2).

        Copied: the item and position embeddings (with the frozen content
        table and ID offsets when SASRec has `item_content`; and the input LayerNorm),
        the first `B - 1` blocks, and the last block's `W_K`, `W_V` (with
        biases). Every expert's `W_Q` starts from SASRec's `W_Q` plus
        Gaussian noise of std `query_noise` times the std of `W_Q`, so the
        experts differ. `FFN'`, the gate, the routers and the MoE LayerNorm
        are fresh; `W_f` starts as `item_projection_initializer` says (by
        default head-slice identities, so the item sub-embeddings start as
        slices of SASRec's trained item embeddings). `num_heads` may differ from SASRec's: the MoE
        block's `W_Q`, `W_K`, `W_V` are `[d, d]` matrices whose columns are
        regrouped, and the earlier blocks keep SASRec's head count.

        Args:
            sasrec: a built `SASRec`.
            num_heads: FAME's `H`; default SASRec's.
            num_experts: `N`.
            dropout: default SASRec's.
            query_noise: relative std of the noise on the copied `W_Q`.
            seed: for the noise.
            **kwargs: passed to the constructor (e.g. `name`).

        Returns:
            A `FAME` with the copied weights.
        """
        num_heads = num_heads or sasrec.num_heads
        backbone = BackboneConfig.of(sasrec)
        if dropout is not None:
            backbone = dataclasses.replace(backbone, dropout=dropout)
        # A mixed-precision SASRec gives a mixed-precision FAME (a float32 one: the current policy).
        policy = sasrec._build_policy if sasrec._build_policy != "float32" else None
        with dtype_policy(policy):
            fame = cls(
                num_items=sasrec.num_items,
                num_heads=num_heads,
                num_experts=num_experts,
                block_heads=sasrec.num_heads,
                facet_vocab_sizes=sasrec.item_embedding.get_config()["facet_vocab_sizes"],
                **backbone.config(),
                **kwargs,
            )
        fame.item_embedding.set_weights(sasrec.item_embedding.get_weights())
        for src, dst in zip(sasrec.transformer_blocks[:-1], fame.transformer_blocks):
            dst.set_weights(src.get_weights())

        fame.moe_attention.load_from_attention(
            sasrec.transformer_blocks[-1].attention, query_noise=query_noise, seed=seed
        )
        return fame


def _alias(name, value, alias, alias_value, default):
    for label, given in ((name, value), (alias, alias_value)):
        if given is not None:
            positive_int(label, given)
    if value is not None and alias_value is not None and int(value) != int(alias_value):
        raise ValueError(f"{name}={value} and its alias {alias}={alias_value} disagree: give one of them")
    for given in (value, alias_value):
        if given is not None:
            return int(given)
    return default
