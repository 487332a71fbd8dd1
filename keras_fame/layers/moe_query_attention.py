import math

import keras
from keras import ops

# Masked keys get PADDING_SCORE (large negative, finite): a fully masked row (a padded query at the left of a
# left-padded sequence) then gives a uniform softmax instead of NaN.
from keras_fame.layers.item_scores import PADDING_SCORE
from keras_fame.validation import no_unknown_kwargs, positive_int, rate


@keras.saving.register_keras_serializable(package="keras_fame")
class MoEQueryAttention(keras.layers.Layer):
    """Causal multi-head self-attention with a mixture of query experts per head.

    Implements FAME's MoE attention (Eq. 12-17). In head `h`, keys and values
    are shared by the head's experts, `k_j = x_j W_K^(h)`, `v_j = x_j W_V^(h)`;
    each of the `N` experts has its own query projection
    `q_i(n) = x_i W_Q(n)^(h)` and attends causally:
    `alpha_ij(n) = softmax_j(q_i(n) . k_j / sqrt(d'))`,
    `f_i(n) = sum_j alpha_ij(n) v_j`. A router per head weighs the experts,
    `beta_i = softmax([f_i(1) | ... | f_i(N)] W_exp^(h))` with
    `W_exp^(h)` of shape `[N d', N]`, and `f_i^(h) = sum_n beta_i(n) f_i(n)`.
    (Eq. 17's prose says "expert query vectors"; its formula sums the
    outputs `f`, which is what is done here.)

    With `num_experts=1` the router weight is exactly 1 and this is ordinary
    per-head scaled dot-product attention; the SASRec blocks use it that way.
    Heads are NOT merged by an output projection: the result is the per-head
    sub-embeddings.

    Keys at padded positions are masked. Query rows that are themselves
    padding produce finite (causal) values that callers mask out.

    Facet attention (ours, after DIF-SR's decoupled side-information
    attention, Xie et al., SIGIR'22): with `facet_dims`, each facet `k` of
    the items (e.g. brand, category) adds its own attention term to every
    head's logits, `sum_k (c_i^k W_Q^(k,h)) . (c_j^k W_K^(k,h)) / sqrt(d')`,
    where `c^k` is the sequence of the items' facet-`k` label embeddings;
    the values stay the items'. `W_K^(k,h)` starts at zero, so the layer
    starts exactly as without facets (a transplanted model starts where its
    source ended) and learns how much each head attends by facet.

    Args:
        num_heads: int, `H`.
        head_dim: int, `d'`.
        num_experts: int, `N` query experts per head. Defaults to 1.
        dropout: float, dropout on the attention weights. Defaults to 0.
        use_bias: bool, biases on the Q/K/V projections. Defaults to True.
        kernel_initializer: initializer of all kernels (the facet keys'
            aside). Defaults to `"glorot_uniform"`.
        facet_dims: optional list of `K` ints, the width of each facet's
            label embeddings; adds the facet attention above. Defaults to
            None (none).

    Call arguments:
        inputs: `[batch, seq, d]`.
        padding_mask: optional bool/int `[batch, seq]`, true at real items.
        facet_sequences: with `facet_dims`, a list of `K` tensors
            `[batch, seq, facet_dims[k]]`.
        return_router_weights: bool, also return `beta`.
        training: bool.

    Returns:
        `[batch, seq, num_heads, head_dim]`, and with
        `return_router_weights=True` also `[batch, seq, num_heads, num_experts]`.

    Example:
    >>> layer = MoEQueryAttention(num_heads=2, head_dim=4, num_experts=3)
    >>> tuple(layer(ops.ones((1, 5, 8))).shape)
    (1, 5, 2, 4)

    Reference:
        Liu, Zhang, Long. Facet-Aware Multi-Head Mixture-of-Experts Model for
        Sequential Recommendation (2025), §4.3.
    """

    def __init__(
        self,
        num_heads,
        head_dim,
        num_experts=1,
        dropout=0.0,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        facet_dims=None,
        **kwargs,
    ):
        no_unknown_kwargs(type(self).__name__, kwargs)
        super().__init__(**kwargs)
        self.facet_dims = None if not facet_dims else tuple(positive_int("facet_dims", w) for w in facet_dims)
        self.num_heads = positive_int("num_heads", num_heads)
        self.head_dim = positive_int("head_dim", head_dim)
        self.num_experts = positive_int("num_experts", num_experts)
        self.dropout = rate("dropout", dropout)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.attention_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    def build(self, inputs_shape, padding_mask_shape=None):
        d = inputs_shape[-1]
        H, N, e = self.num_heads, self.num_experts, self.head_dim
        self.query_kernel = self.add_weight(
            name="query_kernel", shape=(d, H, N, e), initializer=self.kernel_initializer
        )
        self.key_kernel = self.add_weight(
            name="key_kernel", shape=(d, H, e), initializer=self.kernel_initializer
        )
        self.value_kernel = self.add_weight(
            name="value_kernel", shape=(d, H, e), initializer=self.kernel_initializer
        )
        if self.use_bias:
            self.query_bias = self.add_weight(name="query_bias", shape=(H, N, e), initializer="zeros")
            self.key_bias = self.add_weight(name="key_bias", shape=(H, e), initializer="zeros")
            self.value_bias = self.add_weight(name="value_bias", shape=(H, e), initializer="zeros")
        if N > 1:
            self.router_kernel = self.add_weight(
                name="router_kernel", shape=(H, N * e, N), initializer=self.kernel_initializer
            )
        self.facet_query_kernels, self.facet_key_kernels = [], []
        for k, width in enumerate(self.facet_dims or ()):
            self.facet_query_kernels.append(self.add_weight(
                name=f"facet_query_kernel_{k}", shape=(width, H, e), initializer=self.kernel_initializer
            ))
            self.facet_key_kernels.append(self.add_weight(
                name=f"facet_key_kernel_{k}", shape=(width, H, e), initializer="zeros"
            ))

    def facet_logits(self, facet_sequences):
        """The facet attention term, `sum_k (c^k W_Q^(k,h)) . (c^k W_K^(k,h))`, `[batch, H, seq, seq]` (unscaled)."""
        total = 0.0
        for sequence, query_kernel, key_kernel in zip(facet_sequences, self.facet_query_kernels, self.facet_key_kernels):
            sequence = ops.cast(sequence, self.compute_dtype)
            queries = ops.einsum("btw,whe->bthe", sequence, query_kernel)
            keys = ops.einsum("btw,whe->bthe", sequence, key_kernel)
            total = total + ops.einsum("bihe,bjhe->bhij", queries, keys)
        return total

    def call(self, inputs, padding_mask=None, facet_sequences=None, return_router_weights=False, training=None):
        H, N, e = self.num_heads, self.num_experts, self.head_dim
        queries = ops.einsum("btd,dhne->bthne", inputs, self.query_kernel)  # [b, t, H, N, e]
        keys = ops.einsum("btd,dhe->bthe", inputs, self.key_kernel)  # [b, t, H, e]
        values = ops.einsum("btd,dhe->bthe", inputs, self.value_kernel)
        if self.use_bias:
            queries = queries + self.query_bias
            keys = keys + self.key_bias
            values = values + self.value_bias

        logits = ops.einsum("bihne,bjhe->bhnij", queries, keys)
        if self.facet_dims:
            if facet_sequences is None or len(facet_sequences) != len(self.facet_dims):
                raise ValueError(f"this attention has {len(self.facet_dims)} facets: pass as many facet_sequences")
            logits = logits + self.facet_logits(facet_sequences)[:, :, None]  # shared by the head's experts
        logits = logits / math.sqrt(e)
        seq = ops.shape(inputs)[1]
        positions = ops.arange(seq)
        if padding_mask is not None:
            key_ok = ops.cast(padding_mask, "bool")[:, None, None, None, :]
            logits = ops.where(key_ok, logits, ops.cast(PADDING_SCORE, logits.dtype))
        # Future keys get an even lower value: a padded query row (all its
        # keys are padding) then still attends only to the past, so every
        # position, padded or not, is causal.
        causal = (positions[None, :] <= positions[:, None])[None, None, None]  # [.., t_query, t_key]
        logits = ops.where(causal, logits, ops.cast(2 * PADDING_SCORE, logits.dtype))
        weights = ops.softmax(logits, axis=-1)  # [b, H, N, t, t]
        weights = self.attention_dropout(weights, training=training)
        expert_outputs = ops.einsum("bhnij,bjhe->bihne", weights, values)  # [b, t, H, N, e]

        if N == 1:
            outputs = expert_outputs[:, :, :, 0, :]
            router = ops.ones_like(expert_outputs[..., 0])
        else:
            stacked = ops.reshape(expert_outputs, (-1, seq, H, N * e))
            router = ops.softmax(ops.einsum("bthc,hcn->bthn", stacked, self.router_kernel), axis=-1)
            outputs = ops.einsum("bthn,bthne->bthe", router, expert_outputs)
        if return_router_weights:
            return outputs, router
        return outputs

    def load_from_attention(self, source, query_noise=0.01, seed=0):
        """Copies a trained per-head attention's `W_Q`, `W_K`, `W_V` (FAME's transplant, §4.4.2).

        `source` is a built `MoEQueryAttention` with one expert (a SASRec
        block's attention), possibly with a different head count: its
        `[d, H_s, d / H_s]` kernels are `[d, d]` matrices whose columns are
        regrouped into this layer's `H` heads. `W_K`, `W_V` (and biases)
        are copied; every expert's `W_Q` is the source's plus Gaussian noise
        of std `query_noise` times the std of the source `W_Q`, so that the
        experts differ. The router keeps its own start.

        Args:
            source: the attention to copy from.
            query_noise: relative std of the noise on the copied `W_Q`.
            seed: of the noise.
        """
        import numpy as np

        if not (self.built and source.built):
            raise ValueError("both attentions must be built before the transplant")
        if source.num_experts != 1:
            raise ValueError(f"the source has {source.num_experts} experts; the transplant copies a one-expert attention")
        d = int(self.query_kernel.shape[0])
        H, N, e = self.num_heads, self.num_experts, self.head_dim
        if int(source.query_kernel.shape[0]) != d or source.num_heads * source.head_dim != H * e:
            raise ValueError(
                f"shapes differ: source d={int(source.query_kernel.shape[0])}, {source.num_heads} x {source.head_dim}; "
                f"this layer d={d}, {H} x {e}"
            )
        rng = np.random.default_rng(seed)
        query = np.asarray(source.query_kernel).reshape(d, H, 1, e)
        noise = rng.normal(0.0, query_noise * float(query.std()), size=(d, H, N, e))
        self.query_kernel.assign((np.repeat(query, N, axis=2) + noise).astype("float32"))
        self.key_kernel.assign(np.asarray(source.key_kernel).reshape(d, H, e))
        self.value_kernel.assign(np.asarray(source.value_kernel).reshape(d, H, e))
        if source.use_bias and self.use_bias:
            self.query_bias.assign(np.repeat(np.asarray(source.query_bias).reshape(H, 1, e), N, axis=1))
            self.key_bias.assign(np.asarray(source.key_bias).reshape(H, e))
            self.value_bias.assign(np.asarray(source.value_bias).reshape(H, e))
        if self.facet_dims and source.facet_dims == self.facet_dims:  # the facet kernels, regrouped the same way
            for mine, theirs in zip(self.facet_query_kernels + self.facet_key_kernels,
                                    source.facet_query_kernels + source.facet_key_kernels):
                mine.assign(np.asarray(theirs).reshape(tuple(mine.shape)))

    def compute_output_shape(self, inputs_shape, padding_mask_shape=None):
        return tuple(inputs_shape[:-1]) + (self.num_heads, self.head_dim)

    def compute_output_spec(self, inputs, padding_mask=None, facet_sequences=None, return_router_weights=False,
                            training=None):
        shape = tuple(inputs.shape[:-1])
        out = keras.KerasTensor(shape + (self.num_heads, self.head_dim), dtype=self.compute_dtype)
        if return_router_weights:
            return out, keras.KerasTensor(shape + (self.num_heads, self.num_experts), dtype=self.compute_dtype)
        return out

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "head_dim": self.head_dim,
            "num_experts": self.num_experts,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "facet_dims": None if self.facet_dims is None else list(self.facet_dims),
        }
