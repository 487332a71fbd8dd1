"""Training losses: the full-softmax cross-entropy over all items (Eq. 18), a sampled softmax, the facet and routing losses.

Sampled softmax (`sampled_logits`, `SampledSoftmaxCrossEntropy`): each
position's target against a batch's shared candidates
(`keras_fame.data.SampledBatches`). log-Q correction (Bengio & Senecal; Yi et
al., RecSys'19): every candidate's logit, the positive's included, is reduced
by `log q(item)`, the item's sampling probability, so that the sampled softmax
estimates the full one instead of the sampler's bias (for `"uniform"` the
correction is one constant and cancels). A candidate equal to the position's
own target (an accidental hit) and the padding id are masked out, so the
target is never its own negative.

Why not keras-rs: `keras_rs.layers.SamplingProbabilityCorrection` is the same
one-line `logits - log(q)`, and `RemoveAccidentalHits` looks up the positive's
id with `ops.take` over the flattened candidate ids, which fits candidates
shared by all rows but not the `[batch, seq]` positions here (each with its own
target), and it takes one-hot labels of the full candidate width. So the
masking is written here, in `keras.ops`.
"""

import keras
import numpy as np
from keras import ops

from keras_fame.layers.item_scores import PADDING_SCORE


def masked_mean_values(per_position, valid):
    """`[batch, seq]` values whose plain mean is the mean of `per_position` over `valid` positions.

    What a loss's `call` returns: Keras' default reduction
    ("sum_over_batch_size") then gives the masked mean and, under
    `tf.distribute`, scales it by 1 / replicas as Keras expects (a scalar
    returned from `call` would skip that scaling, doubling the reported loss
    and the summed gradients on two replicas). Each replica averages over its
    own positions; `keras.distribution` (JAX) computes the global batch's mean.
    """
    size = ops.cast(ops.shape(per_position)[0] * ops.shape(per_position)[1], "float32")
    return per_position * valid * (size / ops.maximum(ops.sum(valid), 1.0))


@keras.saving.register_keras_serializable(package="keras_fame")
class MaskedSoftmaxCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy over every item, averaged over non-padded positions.

    `-log softmax(r_t)[target_t]` for each position whose target is not 0
    (padding), averaged over those positions in the batch (Eq. 18), so short
    and long sequences weigh by their number of (prefix, next item) pairs.

    `excluded_items` (e.g. items held out as cold-start items) are removed
    from the softmax: their logits are set to a large negative value, so
    they get no gradient as negatives (and no positions target them).

    Args:
        excluded_items: optional list of item ids left out of the softmax.

    Call arguments:
        y_true: int `[batch, seq]` next-item targets, 0 = padding.
        y_pred: `[batch, seq, num_items + 1]` scores (logits).

    Returns:
        A scalar.

    Example:
    >>> loss = MaskedSoftmaxCrossEntropy()
    >>> float(loss(ops.convert_to_tensor([[0, 2]]), ops.zeros((1, 2, 4))))  # log(4)
    1.386...
    """

    def __init__(self, excluded_items=None, name="masked_softmax_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.excluded_items = sorted({int(i) for i in excluded_items}) if excluded_items else None

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        if self.excluded_items:
            width = y_pred.shape[-1]
            excluded = np.zeros(width, dtype=bool)
            excluded[[i for i in self.excluded_items if i < width]] = True
            y_pred = ops.where(ops.convert_to_tensor(excluded), ops.cast(PADDING_SCORE, y_pred.dtype), y_pred)
        valid = ops.cast(y_true > 0, "float32")
        per_position = ops.sparse_categorical_crossentropy(y_true, ops.cast(y_pred, "float32"), from_logits=True)
        return masked_mean_values(per_position, valid)

    def get_config(self):
        return {**super().get_config(), "excluded_items": self.excluded_items}


def replica_share(value):
    """A scalar loss term divided by the number of `tf.distribute` replicas (unchanged elsewhere).

    Keras scales the losses it sums itself (a `keras.losses.Loss`, `add_loss`)
    this way under a TensorFlow strategy, then multiplies the reported value
    back and sums the replicas' gradients; a term a trainer adds in
    `compute_loss` must be scaled too, or it counts once per replica. JAX's
    `keras.distribution` computes the global batch's loss, so nothing is
    scaled there. (Keras' own helper, `scale_loss_for_distribution`, is not
    public API.)
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            value = value * ops.cast(1.0 / replicas, value.dtype)
    return value


def facet_cross_entropy(facet_logits, facet_targets):
    """The auxiliary facet loss: mean over facets of the softmax CE of each target's facet label (ours).

    For facet `k`, every position whose target has a label (`facet_targets[k]
    > 0`; padding targets and unlabelled items have 0) contributes
    `-log softmax(facet_logits[k])[label]`; the loss of facet `k` is the mean
    over those positions (0 if there are none), and the result the mean over
    the facets given. With FAME, `facet_logits[k]` are head `k`'s scores of
    facet `k`'s labels (`FacetGatedHead.facet_logits`), so each head is
    asked to know its own facet of the next item; the model's total loss
    is `L_rec + lambda * facet_cross_entropy`.

    Args:
        facet_logits: list of `[..., C_k + 1]` logits (column 0 = no label,
            masked by the heads).
        facet_targets: list of int `[...]` labels, one per logits tensor
            (extra entries are ignored).

    Returns:
        A float32 scalar.

    Example:
    >>> logits = [ops.convert_to_tensor([[[-1e9, 0.0, 0.0]]])]
    >>> float(facet_cross_entropy(logits, [ops.convert_to_tensor([[2]])]))  # log(2)
    0.693...
    """
    total = 0.0
    for logits, labels in zip(facet_logits, facet_targets):
        labels = ops.cast(labels, "int32")
        valid = ops.cast(labels > 0, "float32")
        per_position = ops.sparse_categorical_crossentropy(labels, ops.cast(logits, "float32"), from_logits=True)
        total = total + ops.sum(per_position * valid) / ops.maximum(ops.sum(valid), 1.0)
    return total / max(1, len(facet_logits))


def mixture_routing_loss(head_target_log_probs, gates, targets):
    """The routing loss: the negative log-likelihood of the heads as a mixture of experts (ours).

    `L_route = -log sum_h g_h p_h(target)`, averaged over positions whose
    target is not 0 (padding), where `p_h` is head `h`'s own softmax over
    the items (FAME's head `h` alone, `x_v^(h) . F^(h)`) and `g` the gate.
    This is the likelihood of Jacobs et al.'s adaptive mixtures of local
    experts (Neural Computation 1991) for a softmax output. Its gradient
    moves the gate towards the heads that give the target a high
    probability (the posterior responsibilities `g_h p_h / sum_k g_k p_k`)
    and trains each head mostly on the positions it is responsible for, so
    the heads compete instead of acting as halves of one query. FAME's
    score stays the gated sum of the heads' logits (Eq. 11); this loss only
    adds a training signal, weighted by `mu` (`routing_loss_weight`).

    Args:
        head_target_log_probs: `[..., H]`, `log p_h(target)` per position.
        gates: `[..., H]`, the gate `g` at the same positions.
        targets: int `[...]`, 0 = padding (masked).

    Returns:
        A float32 scalar.

    Example:
    >>> log_p = ops.log(ops.convert_to_tensor([[[0.5, 0.1]]]))
    >>> gates = ops.convert_to_tensor([[[0.5, 0.5]]])
    >>> round(float(mixture_routing_loss(log_p, gates, ops.convert_to_tensor([[3]]))), 4)  # -log 0.3
    1.204
    """
    log_p = ops.cast(head_target_log_probs, "float32")
    log_g = ops.log(ops.maximum(ops.cast(gates, "float32"), 1e-12))
    per_position = -ops.logsumexp(log_g + log_p, axis=-1)
    valid = ops.cast(ops.cast(targets, "int32") > 0, "float32")
    return ops.sum(per_position * valid) / ops.maximum(ops.sum(valid), 1.0)


def sampled_logits(user, items, targets, candidates, candidate_log_q=None, target_log_q=None):
    """`[..., 1 + C]` logits: column 0 the target, then the candidates; log-Q corrected, hits masked.

    Args:
        user: `[batch, seq, D]` user vectors at every position.
        items: `[num_items + 1, D]` item vectors, or a callable from int ids
            (any shape) to their rows `[..., D]` (e.g.
            `ItemEmbedding.rows`: only the target and candidate rows are
            built).
        targets: int `[batch, seq]` (0 = padding).
        candidates: int `[C]` shared by the batch (0 = none, masked).
        candidate_log_q, target_log_q: optional log sampling probabilities,
            `[C]` and `[batch, seq]`, subtracted from the logits.
    """
    targets = ops.cast(targets, "int32")
    candidates = ops.cast(candidates, "int32")
    rows = items if callable(items) else (lambda ids: ops.take(items, ids, axis=0))
    positive = ops.sum(user * rows(targets), axis=-1, keepdims=True)  # [b, t, 1]
    negative = ops.einsum("btd,cd->btc", user, rows(candidates))  # [b, t, C]
    if target_log_q is not None:
        positive = positive - ops.cast(target_log_q, positive.dtype)[..., None]
    if candidate_log_q is not None:
        negative = negative - ops.cast(candidate_log_q, negative.dtype)
    hit = ops.logical_or(candidates[None, None, :] == targets[..., None], candidates[None, None, :] == 0)
    negative = ops.where(hit, ops.cast(PADDING_SCORE, negative.dtype), negative)
    return ops.concatenate([positive, negative], axis=-1)


@keras.saving.register_keras_serializable(package="keras_fame")
class SampledSoftmaxCrossEntropy(keras.losses.Loss):
    """Cross-entropy over `[target | candidates]` logits (the target in column 0), averaged over non-padded positions.

    Call arguments:
        y_true: int `[batch, seq]` targets, 0 = padding (only the mask is read).
        y_pred: `[batch, seq, 1 + C]` from `sampled_logits`.
    """

    def __init__(self, name="sampled_softmax_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        valid = ops.cast(ops.cast(y_true, "int32") > 0, "float32")
        logits = ops.cast(y_pred, "float32")
        per_position = ops.logsumexp(logits, axis=-1) - logits[..., 0]
        return masked_mean_values(per_position, valid)
