import keras
from keras import ops

# The one logit for what must never win (padding, seen items, masked keys, accidental hits): finite, so that
# softmax cross-entropy and top-k stay NaN-free.
PADDING_SCORE = -1e9


def mask_padding_scores(scores):
    """Gives the padding column (item 0) of `[..., num_items + 1]` scores `PADDING_SCORE`."""
    column = ops.arange(ops.shape(scores)[-1])
    return ops.where(column == 0, ops.cast(PADDING_SCORE, scores.dtype), scores)


def score_items(features, item_table):
    """`features @ item_table^T` over the last axis: `[..., d] x [V, d] -> [..., V]`.

    Flattened to one 2-D matmul: TensorFlow's gradient of a broadcasting
    einsum materialises `[..., V, d]`, which does not fit in memory.
    """
    width = features.shape[-1]
    lead = ops.shape(features)[:-1]
    flat = ops.reshape(features, (-1, width))
    scores = ops.matmul(flat, ops.transpose(item_table))
    return ops.reshape(scores, (*lead, ops.shape(item_table)[0]))


@keras.saving.register_keras_serializable(package="keras_fame")
class ItemScores(keras.layers.Layer):
    """SASRec's output layer: scores every item against a sequence representation.

    `r_{v,t} = x_v . F_t` (Eq. 6) with the shared item table; the padding
    column gets `PADDING_SCORE` so it is never predicted or ranked.

    Call arguments:
        features: `[..., d]`.
        item_table: `[num_items + 1, d]`.

    Returns:
        `[..., num_items + 1]` scores (logits).

    Example:
    >>> tuple(ItemScores()(ops.ones((2, 3, 4)), ops.ones((11, 4))).shape)
    (2, 3, 11)
    """

    def user_vectors(self, features, training=None):
        """The scoring-head interface shared with `FacetGatedHead`: `{"user": features}`.

        The score of item `v` is `user . x_v` (Eq. 6); SASRec has no heads'
        own queries and no gate.
        """
        return {"user": ops.cast(features, self.compute_dtype)}

    def facet_queries(self, vectors, num_facets):
        """The vectors that score facet labels: the user vector, for every facet (ours)."""
        return [vectors["user"]] * int(num_facets)

    def call(self, features, item_table):
        # Explicit casts: wrappers (scorers, trainers) call `call` directly, past Keras' input autocast;
        # under mixed precision this layer computes in float32 on bf16 features.
        features, item_table = ops.cast(features, self.compute_dtype), ops.cast(item_table, self.compute_dtype)
        return mask_padding_scores(score_items(features, item_table))

    def compute_output_shape(self, features_shape, item_table_shape):
        return tuple(features_shape[:-1]) + (item_table_shape[0],)
