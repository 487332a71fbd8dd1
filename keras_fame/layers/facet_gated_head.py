import keras
from keras import ops

from keras_fame.layers.item_scores import mask_padding_scores, score_items
from keras_fame.validation import no_unknown_kwargs, non_negative_int, positive_float, positive_int, rate


@keras.saving.register_keras_serializable(package="keras_fame")
class HeadSliceIdentity(keras.initializers.Initializer):
    """Starts a `[d, H, d']` item projection (`H d' = d`) as `gain` times the identity.

    With it, `x_v W_f^(h)` starts as the `h`-th slice of `x_v` (times
    `gain`), the slice the residual path carries into head `h`, so every head
    starts by scoring items in the space of SASRec's tied-embedding score
    `x_v . F`. The default gain is `H`: while the gate is still uniform
    (`1 / H` per head), the gated score then equals `x_v . [F^(1) | ... | F^(H)]`
    at SASRec's scale, instead of `1 / H` of it.

    Args:
        gain: float, or `None` for `H` (read from the shape).

    Example:
    >>> w = HeadSliceIdentity()((4, 2, 2))
    >>> np.asarray(w).reshape(4, 4).tolist() == (2 * np.eye(4)).tolist()
    True
    """

    def __init__(self, gain=None):
        self.gain = None if gain is None else float(gain)

    def __call__(self, shape, dtype=None):
        d = int(shape[0])
        if len(shape) != 3 or int(shape[1]) * int(shape[2]) != d:
            raise ValueError(f"HeadSliceIdentity needs shape [d, H, d'] with H * d' == d, got {tuple(shape)}")
        gain = float(shape[1]) if self.gain is None else self.gain
        return ops.reshape(gain * ops.eye(d, dtype=dtype or "float32"), shape)

    def get_config(self):
        return {"gain": self.gain}


@keras.saving.register_keras_serializable(package="keras_fame")
class FacetGatedHead(keras.layers.Layer):
    """Facet-aware multi-head prediction with a softmax gate over heads.

    Implements FAME's prediction layer (Eq. 7-11). Each head's sub-embedding
    goes through ONE feed-forward network shared by all heads,
    `F^(h) = LayerNorm(f^(h) + Dropout(FFN'(f^(h))))`, `FFN'`: `d' -> d' -> d'`
    with ReLU. Items get per-head sub-embeddings from the one shared table,
    `x_v^(h) = x_v W_f^(h)` with `W_f^(h)` of shape `[d, d']`. The gate is
    `g = softmax([F^(1) | ... | F^(H)] W_g + b_g)` and the score
    `P(v) = sum_h g^(h) x_v^(h) . F^(h)` (Eq. 11).

    The score is computed as ONE contraction of width `d` against the item
    table itself: `P(v) = x_v . sum_h g^(h) W_f^(h) F^(h)` (Eq. 11 with the
    projection moved to the query side, `user_vectors`), the same cost as
    SASRec's `x_v . F`; no projected `[items, d]` table and no `H` separate
    `[batch, items]` score tensors are formed. The LayerNorm (over `d'`) is
    shared by the heads like `FFN'`.

    The padding column (item 0) gets a large negative score so it is never
    ranked or predicted.

    Args:
        num_heads: int, `H`.
        head_dim: int, `d'`.
        dropout: float in `[0, 1)`, on the FFN' branch. Defaults to 0.
        layer_norm_epsilon: float. Defaults to 1e-8.
        kernel_initializer: initializer of the FFN' and gate kernels.
            Defaults to `"glorot_uniform"`.
        item_projection_initializer: initializer of `W_f`, `[d, H, d']`.
            Defaults to `HeadSliceIdentity()`, which starts `x_v^(h)` as `H`
            times the `h`-th slice of `x_v`, so FAME starts from SASRec's
            tied-embedding score (the paper does not say how `W_f` starts;
            `docs/design.md`). Pass e.g. `"glorot_uniform"` for a random start.
        gate_temperature: float, divides the gate logits (Eq. 10; ours, the
            paper's gate has 1). Defaults to 1.0.
        gate_context_dim: int `C >= 0`. With `C > 0` the gate also reads a
            per-position context `a` of width `C` (FAME's `gate_facets`: the
            history's facet agreement, `ItemEmbedding.facet_agreement`):
            `g = softmax(([F^(1) | ... | F^(H)] W_g + b_g + a A) / tau)`
            with `A` `[C, H]` starting at zero, so the head starts as the
            one without context (ours; the paper's gate reads `F` only).
            Defaults to 0.

    Call arguments:
        features: `[..., num_heads, head_dim]`, per-head sub-embeddings `f^(h)`
            (any leading dims, e.g. `[batch, seq]` or `[batch]`); with
            `gate_context_dim > 0`, the pair `(f, a)`, `a` `[..., C]`.
        item_table: `[num_items + 1, num_heads * head_dim]`, the item embeddings.
        return_gates: bool, also return `g`, `[..., num_heads]`.
        return_head_scores: bool, also return each head's own scores
            `x_v^(h) . F^(h)`, `[..., num_heads, num_items + 1]` (for
            explanations, e.g. the paper's Fig. 7; costs `H` times more).
        training: bool.

    Returns:
        scores `[..., num_items + 1]`; with the flags, a tuple
        `(scores, gates)` or `(scores, gates, head_scores)`.

    Example:
    >>> head = FacetGatedHead(num_heads=2, head_dim=4)
    >>> tuple(head(ops.ones((3, 2, 4)), ops.ones((11, 8))).shape)
    (3, 11)

    Reference:
        Liu, Zhang, Long. Facet-Aware Multi-Head Mixture-of-Experts Model for
        Sequential Recommendation (2025), §4.2.3, https://arxiv.org/abs/2411.01457.
    """

    def __init__(
        self,
        num_heads,
        head_dim,
        dropout=0.0,
        layer_norm_epsilon=1e-8,
        kernel_initializer="glorot_uniform",
        item_projection_initializer=None,
        gate_temperature=1.0,
        gate_context_dim=0,
        **kwargs,
    ):
        no_unknown_kwargs(type(self).__name__, kwargs)
        super().__init__(**kwargs)
        self.gate_temperature = positive_float("gate_temperature", gate_temperature)
        self.gate_context_dim = non_negative_int("gate_context_dim", gate_context_dim)
        self.num_heads = positive_int("num_heads", num_heads)
        self.head_dim = positive_int("head_dim", head_dim)
        self.dropout = rate("dropout", dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.item_projection_initializer = keras.initializers.get(item_projection_initializer or HeadSliceIdentity())
        init = lambda: keras.initializers.get(keras.initializers.serialize(self.kernel_initializer))
        policy = self.dtype_policy  # sub-layers follow this layer's policy (e.g. float32 under mixed precision)
        self.ffn_inner = keras.layers.Dense(
            self.head_dim, activation="relu", kernel_initializer=init(), name="ffn_inner", dtype=policy
        )
        self.ffn_outer = keras.layers.Dense(self.head_dim, kernel_initializer=init(), name="ffn_outer", dtype=policy)
        self.ffn_dropout = keras.layers.Dropout(self.dropout, dtype=policy)
        self.ffn_norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="ffn_norm", dtype=policy)

    has_gates = True  # the scoring-head interface shared with `ItemScores`

    def split_input(self, features):
        """`(f, a)` from the head's input: `a` is None without a gate context."""
        if not self.gate_context_dim:
            return features, None
        if not isinstance(features, (tuple, list)) or len(features) != 2:
            raise ValueError(
                f"{self.name} has gate_context_dim={self.gate_context_dim}: call it on the pair (features, gate_context)"
            )
        return features[0], features[1]

    def build(self, features_shape, item_table_shape=None):
        features_shape, context_shape = self.split_input(features_shape)
        if context_shape is not None and context_shape[-1] not in (None, self.gate_context_dim):
            raise ValueError(f"gate context width {context_shape[-1]} != gate_context_dim = {self.gate_context_dim}")
        H, e = self.num_heads, self.head_dim
        d = H * e
        if item_table_shape is not None and item_table_shape[-1] not in (None, d):
            raise ValueError(f"item table width {item_table_shape[-1]} != num_heads * head_dim = {d}")
        head_shape = (None, e)
        self.ffn_inner.build(head_shape)
        self.ffn_outer.build(head_shape)
        self.ffn_norm.build(head_shape)
        self.item_projection = self.add_weight(
            name="item_projection", shape=(d, H, e), initializer=self.item_projection_initializer
        )
        self.gate_kernel = self.add_weight(name="gate_kernel", shape=(H, e, H), initializer=self.kernel_initializer)
        self.gate_bias = self.add_weight(name="gate_bias", shape=(H,), initializer="zeros")
        if self.gate_context_dim:
            self.gate_context_kernel = self.add_weight(
                name="gate_context_kernel", shape=(self.gate_context_dim, H), initializer="zeros"
            )

    def facets(self, features, training=None):
        """`F^(h)` (Eq. 7), `[..., H, d']`."""
        ffn = self.ffn_outer(self.ffn_inner(features))
        return self.ffn_norm(features + self.ffn_dropout(ffn, training=training))

    def gates(self, facets, gate_context=None):
        """`g` (Eq. 10), `[..., H]`; `facets` is `F` from `facets()`, `gate_context` `a` `[..., C]` (or None)."""
        H, e = self.num_heads, self.head_dim
        if H == 1:
            return ops.ones_like(facets[..., 0, :1])
        stacked = ops.reshape(facets, (*ops.shape(facets)[:-2], H * e))  # [F^(1) | ... | F^(H)]
        logits = ops.matmul(stacked, ops.reshape(self.gate_kernel, (H * e, H))) + self.gate_bias
        if gate_context is not None:
            logits = logits + ops.matmul(ops.cast(gate_context, logits.dtype), self.gate_context_kernel)
        if self.gate_temperature != 1.0:
            logits = logits / self.gate_temperature
        return ops.softmax(logits, axis=-1)

    def head_user_vectors(self, facets):
        """Each head's query in item space, `W_f^(h) F^(h)`, `[..., H, d]` (Eq. 8-9).

        Head `h`'s score of item `v`, `x_v^(h) . F^(h) = (x_v W_f^(h)) . F^(h)`,
        equals `x_v . (W_f^(h) F^(h))`: projecting the query (`d'` to `d`)
        instead of the item table costs `d^2` per user instead of `|V| d^2`
        per call, and scores any rows of the plain table.
        """
        return ops.einsum("...he,dhe->...hd", facets, ops.cast(self.item_projection, facets.dtype))

    def user_vectors(self, features, training=None):
        """The scoring-head interface shared with `ItemScores`: query vectors in item space.

        Eq. 11 as one dot product with the item table:
        `P(v) = sum_h g^(h) x_v W_f^(h) . F^(h) = x_v . user`, with
        `user = sum_h g^(h) W_f^(h) F^(h)`.

        Args:
            features: `[..., H, d']`, the per-head sub-embeddings `f^(h)`
                (with a gate context, the pair `(f, a)`).
            training: bool.

        Returns:
            A dict: `user` `[..., d]` (the score of item `v` is
            `user . x_v`), `head_users` `[..., H, d]` (head `h`'s own score
            is `head_users[h] . x_v`), `gates` `[..., H]` (Eq. 10) and
            `facets` `F` `[..., H, d']` (Eq. 7).
        """
        # Explicit cast: wrappers (scorers, trainers) call these methods directly, past Keras' input
        # autocast; under mixed precision this layer computes in float32 on bf16 features.
        features, gate_context = self.split_input(features)
        facets = self.facets(ops.cast(features, self.compute_dtype), training=training)
        gates = self.gates(facets, gate_context)
        H, e = self.num_heads, self.head_dim
        # sum_h g_h W_f^(h) F^(h) as one [.., d] x [d, d] matmul on the gated stack [g_1 F^(1) | ... | g_H F^(H)].
        gated = ops.reshape(facets * gates[..., None], (*ops.shape(facets)[:-2], H * e))
        projection = ops.reshape(ops.cast(self.item_projection, gated.dtype), (H * e, H * e))  # [d, H d']
        user = ops.matmul(gated, ops.transpose(projection))
        # Each head's own query: only computed where read (explanations, the facet loss); compiled graphs drop it
        # otherwise.
        return {"user": user, "head_users": self.head_user_vectors(facets), "gates": gates, "facets": facets}

    def facet_queries(self, vectors, num_facets):
        """The vectors that score facet labels: head `k`'s query for facet `k`, `k < min(K, H)` (ours).

        Used by the auxiliary facet loss (`keras_fame.models.retrieval.facet_logits`):
        head `k` scores facet `k`'s label rows as it scores items.
        """
        return [vectors["head_users"][..., k, :] for k in range(min(int(num_facets), self.num_heads))]

    def call(self, features, item_table, return_gates=False, return_head_scores=False, training=None):
        vectors = self.user_vectors(features, training=training)
        item_table = ops.cast(item_table, self.compute_dtype)
        # One matmul of width d against the item table (Eq. 11).
        scores = mask_padding_scores(score_items(vectors["user"], item_table))
        if not (return_gates or return_head_scores):
            return scores
        outputs = (scores, vectors["gates"])
        if return_head_scores:
            outputs += (mask_padding_scores(score_items(vectors["head_users"], item_table)),)
        return outputs

    def compute_output_spec(self, features, item_table, return_gates=False, return_head_scores=False, training=None):
        lead = tuple(self.split_input(features)[0].shape[:-2])
        num_rows = item_table.shape[0]
        scores = keras.KerasTensor(lead + (num_rows,), dtype=self.compute_dtype)
        if not (return_gates or return_head_scores):
            return scores
        outputs = (scores, keras.KerasTensor(lead + (self.num_heads,), dtype=self.compute_dtype))
        if return_head_scores:
            outputs += (keras.KerasTensor(lead + (self.num_heads, num_rows), dtype=self.compute_dtype),)
        return outputs

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "head_dim": self.head_dim,
            "dropout": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "item_projection_initializer": keras.initializers.serialize(self.item_projection_initializer),
            "gate_temperature": self.gate_temperature,
            "gate_context_dim": self.gate_context_dim,
        }
