import keras
from keras import ops

from keras_fame.layers.moe_query_attention import MoEQueryAttention
from keras_fame.validation import divisible, no_unknown_kwargs, positive_int, rate


@keras.saving.register_keras_serializable(package="keras_fame")
class TransformerBlock(keras.layers.Layer):
    """A SASRec self-attention block (§3.2, Eq. 1-5), post-LayerNorm.

    `h = LayerNorm(x + Dropout(MHA(x)))`, then
    `F = LayerNorm(h + Dropout(FFN(h)))` with `FFN(h) = ReLU(h W_1 + b_1) W_2 + b_2`
    (`activation="gelu"` gives the GELU FFN of BERT4Rec-style codebases).
    The attention is `MoEQueryAttention` with one expert (ordinary causal
    multi-head attention) whose heads are concatenated, as in the original
    SASRec (no output projection), so that FAME's transplant (§4.4.2) can
    copy `W_Q`, `W_K`, `W_V` straight into its MoE block. Outputs at padded
    positions are zeroed.

    Args:
        hidden_dim: int, `d`.
        num_heads: int, `H`; `d` must be divisible by it.
        intermediate_dim: int, FFN inner width (the paper: `d`).
        dropout: float, on the residual branches and attention weights.
        layer_norm_epsilon: float.
        kernel_initializer: initializer of all kernels.
        activation: FFN activation, `"relu"` (the paper, Eq. 5) or e.g. `"gelu"`.
        facet_dims: optional list of facet embedding widths: facet attention
            (`MoEQueryAttention`). Defaults to None.

    Call arguments:
        inputs: `[batch, seq, hidden_dim]`.
        padding_mask: bool `[batch, seq]`, true at real items.
        facet_sequences: with `facet_dims`, the items' facet label
            embeddings, a list of `[batch, seq, facet_dims[k]]`.
        training: bool.

    Returns:
        `[batch, seq, hidden_dim]`.

    Example:
    >>> block = TransformerBlock(hidden_dim=8, num_heads=2)
    >>> tuple(block(ops.ones((1, 5, 8)), ops.ones((1, 5), "bool")).shape)
    (1, 5, 8)
    """

    def __init__(
        self,
        hidden_dim,
        num_heads,
        intermediate_dim=None,
        dropout=0.0,
        layer_norm_epsilon=1e-8,
        kernel_initializer="glorot_uniform",
        activation="relu",
        facet_dims=None,
        **kwargs,
    ):
        no_unknown_kwargs(type(self).__name__, kwargs)
        super().__init__(**kwargs)
        self.facet_dims = None if not facet_dims else tuple(int(w) for w in facet_dims)
        self.hidden_dim = positive_int("hidden_dim", hidden_dim)
        self.num_heads = positive_int("num_heads", num_heads)
        divisible("hidden_dim", self.hidden_dim, "num_heads", self.num_heads)
        self.intermediate_dim = positive_int("intermediate_dim", intermediate_dim or hidden_dim)
        self.dropout = rate("dropout", dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.activation = activation
        init = lambda: keras.initializers.get(keras.initializers.serialize(self.kernel_initializer))
        policy = self.dtype_policy  # sub-layers follow this layer's policy
        self.attention = MoEQueryAttention(
            num_heads=self.num_heads,
            head_dim=self.hidden_dim // self.num_heads,
            num_experts=1,
            dropout=self.dropout,
            kernel_initializer=init(),
            facet_dims=self.facet_dims,
            name="attention",
            dtype=policy,
        )
        self.attention_dropout = keras.layers.Dropout(self.dropout, dtype=policy)
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="attention_norm", dtype=policy
        )
        self.ffn_inner = keras.layers.Dense(
            self.intermediate_dim, activation=activation, kernel_initializer=init(), name="ffn_inner", dtype=policy
        )
        self.ffn_outer = keras.layers.Dense(self.hidden_dim, kernel_initializer=init(), name="ffn_outer", dtype=policy)
        self.ffn_dropout = keras.layers.Dropout(self.dropout, dtype=policy)
        self.ffn_norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="ffn_norm", dtype=policy)

    def build(self, inputs_shape, padding_mask_shape=None):
        self.attention.build(inputs_shape)
        self.attention_norm.build(inputs_shape)
        self.ffn_inner.build(inputs_shape)
        self.ffn_outer.build(tuple(inputs_shape[:-1]) + (self.intermediate_dim,))
        self.ffn_norm.build(inputs_shape)

    def call(self, inputs, padding_mask=None, facet_sequences=None, training=None):
        heads = self.attention(inputs, padding_mask=padding_mask, facet_sequences=facet_sequences, training=training)
        attended = ops.reshape(heads, ops.shape(inputs))
        h = self.attention_norm(inputs + self.attention_dropout(attended, training=training))
        ffn = self.ffn_outer(self.ffn_inner(h))
        out = self.ffn_norm(h + self.ffn_dropout(ffn, training=training))
        if padding_mask is not None:
            out = out * ops.cast(padding_mask, out.dtype)[..., None]
        return out

    def compute_output_shape(self, inputs_shape, padding_mask_shape=None):
        return tuple(inputs_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_dim": self.hidden_dim,
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "activation": self.activation,
            "facet_dims": None if self.facet_dims is None else list(self.facet_dims),
        }
