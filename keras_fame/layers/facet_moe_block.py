import keras
from keras import ops

from keras_fame.layers.moe_query_attention import MoEQueryAttention


@keras.saving.register_keras_serializable(package="keras_fame")
class FacetMoEBlock(keras.layers.Layer):
    """FAME's last block: MoE attention, split by head, residual and LayerNorm over `d'` (§4.3).

    `f^(h) = LayerNorm_{d'}(x^(h) + Dropout(MoEAttention(x)^(h)))`, where
    `x^(h)` is head `h`'s slice of the block input and `MoEAttention` is
    `MoEQueryAttention` (Eq. 12-17). The residual + LayerNorm is our
    reading of the part the paper leaves implicit (`FAME_SPEC.md`); it makes
    the block a drop-in for SASRec's last `TransformerBlock`, whose
    `W_Q`/`W_K`/`W_V` it takes over (`load_from_attention`). The
    LayerNorm's `gamma`/`beta` have `d'` entries, shared by the heads.

    Args:
        num_heads: int, `H`.
        head_dim: int, `d'`.
        num_experts: int, `N` query experts per head.
        dropout: float, on the attention weights and the residual branch.
        layer_norm_epsilon: float.
        facet_dims: optional list of facet embedding widths: facet attention
            (`MoEQueryAttention`). Defaults to None.

    Call arguments:
        inputs: `[batch, seq, H * d']`.
        padding_mask: bool `[batch, seq]`, true at real items.
        facet_sequences: with `facet_dims`, the items' facet label
            embeddings, a list of `[batch, seq, facet_dims[k]]`.
        return_router_weights: bool, also return the routers' weights
            `beta` (Eq. 16). Defaults to False.
        training: bool.

    Returns:
        `[batch, seq, H, d']`, the per-head sub-embeddings `f^(h)`; with
        `return_router_weights`, a tuple with `beta` `[batch, seq, H, N]`.

    Example:
    >>> block = FacetMoEBlock(num_heads=2, head_dim=4, num_experts=3)
    >>> tuple(block(ops.ones((1, 5, 8)), ops.ones((1, 5), "bool")).shape)
    (1, 5, 2, 4)
    """

    def __init__(self, num_heads, head_dim, num_experts, dropout=0.0, layer_norm_epsilon=1e-8, facet_dims=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.head_dim, self.num_experts = int(num_heads), int(head_dim), int(num_experts)
        self.dropout, self.layer_norm_epsilon = float(dropout), float(layer_norm_epsilon)
        self.facet_dims = None if not facet_dims else tuple(int(w) for w in facet_dims)
        policy = self.dtype_policy  # sub-layers follow this layer's policy
        self.attention = MoEQueryAttention(
            num_heads=num_heads, head_dim=head_dim, num_experts=num_experts, dropout=dropout,
            facet_dims=self.facet_dims, name="attention", dtype=policy,
        )
        self.residual_dropout = keras.layers.Dropout(dropout, name="residual_dropout", dtype=policy)
        self.norm = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="norm", dtype=policy)

    def build(self, inputs_shape, padding_mask_shape=None):
        self.attention.build(inputs_shape, padding_mask_shape)
        self.norm.build(tuple(inputs_shape[:-1]) + (self.num_heads, self.head_dim))

    def call(self, inputs, padding_mask=None, facet_sequences=None, return_router_weights=False, training=None):
        heads, router = self.attention(
            inputs, padding_mask=padding_mask, facet_sequences=facet_sequences, return_router_weights=True,
            training=training,
        )
        split = ops.reshape(inputs, (*ops.shape(inputs)[:-1], self.num_heads, self.head_dim))
        outputs = self.norm(split + self.residual_dropout(heads, training=training))
        return (outputs, router) if return_router_weights else outputs

    def compute_output_spec(self, inputs, padding_mask=None, facet_sequences=None, return_router_weights=False,
                            training=None):
        # The residual and the LayerNorm keep the attention's per-head shape: its spec is the block's.
        return self.attention.compute_output_spec(inputs, padding_mask, facet_sequences, return_router_weights)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "head_dim": self.head_dim,
            "num_experts": self.num_experts,
            "dropout": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "facet_dims": None if self.facet_dims is None else list(self.facet_dims),
        }
