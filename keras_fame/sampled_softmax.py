"""Sampled-softmax training for large catalogs: each position's softmax sees its target and a few negatives.

Full-softmax training materialises `[batch, seq, num_items + 1]` scores; with
10^6 items that does not fit. Here the model scores only a shared set of `C`
candidate items per batch (`[batch, seq, 1 + C]`):

    trainer = SampledSoftmaxTrainer(model)            # wraps a SASRec or FAME; shares its weights
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), loss=SampledSoftmaxCrossEntropy())
    trainer.fit(SampledBatches(batches, model.num_items, num_negatives=256, sampler="uniform"),
                callbacks=[FullRankingEvaluation(split.validation)], shuffle=False)
    model.recommend(...)                               # the wrapped model is trained

Samplers (the negatives are drawn in the data pipeline, so this works on every backend
without a custom `train_step`):
- `"uniform"`: `C` items drawn uniformly (with replacement) from `1..num_items`;
- `"popularity"`: `C` items drawn by training frequency (the distribution in-batch
  negatives follow), with replacement;
- `"in_batch"`: the batch's own targets are the candidates (`C` = the batch's cells).

log-Q correction (Bengio & Senécal; Yi et al., RecSys'19): every candidate's logit, the
positive's included, is reduced by `log q(item)`, the item's sampling probability, so
that the sampled softmax estimates the full one instead of the sampler's bias. For
`"uniform"` the correction is one constant and cancels. A candidate equal to the
position's own target (an accidental hit) and the padding id are masked out, so the
target is never its own negative. Losses are averaged over non-padded positions only.

Why not keras-rs: `keras_rs.layers.SamplingProbabilityCorrection` is the same one-line
`logits - log(q)`, and `RemoveAccidentalHits` looks up the positive's id with
`ops.take` over the flattened candidate ids, which fits candidates shared by all rows
but not the `[batch, seq]` positions here (each with its own target), and it takes
one-hot labels of the full candidate width. So the masking is written here, in
`keras.ops`; keras-rs is not a dependency.
"""

import keras
import numpy as np
from keras import ops

from keras_fame.losses import masked_mean_values
from keras_fame.models.sequential_recommender import RecommenderTrainer, score_factors_of

_MASKED = -1e9
SAMPLERS = ("uniform", "popularity", "in_batch")


class SampledBatches(keras.utils.PyDataset):
    """`TrainingBatches` plus each batch's candidate items and their log sampling probabilities.

    Batch `i` of epoch `e` draws its candidates from `(seed, e, i)`, so a
    resumed epoch sees the same ones.

    Args:
        batches: a `keras_fame.data.TrainingBatches`.
        num_items: catalog size.
        num_negatives: `C` for the `"uniform"` and `"popularity"` samplers.
        sampler: one of `SAMPLERS`.
        item_counts: int `[num_items + 1]` training frequencies (default:
            counted from `batches.targets`), for `"popularity"`/`"in_batch"`.
        seed: of the draws.

    Yields:
        `(inputs, targets)` with `inputs` a dict: `item_ids`, `targets`
        `[batch, width]`, `candidates` int32 `[C]`, `candidate_log_q` float32
        `[C]`, `target_log_q` float32 `[batch, width]`.
    """

    def __init__(self, batches, num_items, num_negatives=256, sampler="uniform", item_counts=None, seed=0, **kwargs):
        super().__init__(**kwargs)
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler={sampler!r}; choose one of {SAMPLERS}")
        if sampler != "in_batch" and not 1 <= num_negatives:
            raise ValueError(f"num_negatives={num_negatives} must be at least 1")
        self.batches, self.num_items, self.num_negatives = batches, int(num_items), int(num_negatives)
        self.sampler, self.seed = sampler, seed
        if item_counts is None:
            item_counts = np.bincount(batches.targets.ravel(), minlength=self.num_items + 1)
        counts = np.asarray(item_counts, dtype=np.float64)[: self.num_items + 1].copy()
        counts[0] = 0.0
        if sampler == "uniform":
            q = np.full(self.num_items + 1, 1.0 / self.num_items)
        else:
            # Items never seen in training get a tiny probability, not log(0).
            q = np.maximum(counts, 1e-3) / max(float(counts.sum()), 1.0)
        q[0] = 1.0
        self.log_q = np.log(q).astype(np.float32)
        self._cdf = np.cumsum(q[1:] / q[1:].sum())

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        inputs, targets = self.batches[index]
        if self.sampler == "in_batch":
            candidates = targets.reshape(-1).astype(np.int32)
        else:
            rng = np.random.default_rng([int(self.seed or 0), int(self.batches.epoch), int(index)])
            if self.sampler == "uniform":
                candidates = rng.integers(1, self.num_items + 1, size=self.num_negatives)
            else:
                candidates = np.searchsorted(self._cdf, rng.random(self.num_negatives), side="right") + 1
            candidates = np.minimum(candidates, self.num_items).astype(np.int32)
        x = {
            "item_ids": inputs,
            "targets": targets,
            "candidates": candidates,
            "candidate_log_q": self.log_q[candidates],
            "target_log_q": self.log_q[targets],
        }
        return x, targets

    def on_epoch_end(self):
        self.batches.on_epoch_end()

    def set_epoch(self, epoch):
        self.batches.set_epoch(epoch)


def sampled_logits(user, items, targets, candidates, candidate_log_q=None, target_log_q=None):
    """`[..., 1 + C]` logits: column 0 the target, then the candidates; log-Q corrected, hits masked.

    Args:
        user: `[batch, seq, D]` user vectors at every position.
        items: `[num_items + 1, D]` item vectors.
        targets: int `[batch, seq]` (0 = padding).
        candidates: int `[C]` shared by the batch (0 = none, masked).
        candidate_log_q, target_log_q: optional log sampling probabilities,
            `[C]` and `[batch, seq]`, subtracted from the logits.
    """
    targets = ops.cast(targets, "int32")
    candidates = ops.cast(candidates, "int32")
    positive = ops.sum(user * ops.take(items, targets, axis=0), axis=-1, keepdims=True)  # [b, t, 1]
    negative = ops.einsum("btd,cd->btc", user, ops.take(items, candidates, axis=0))  # [b, t, C]
    if target_log_q is not None:
        positive = positive - ops.cast(target_log_q, positive.dtype)[..., None]
    if candidate_log_q is not None:
        negative = negative - ops.cast(candidate_log_q, negative.dtype)
    hit = ops.logical_or(candidates[None, None, :] == targets[..., None], candidates[None, None, :] == 0)
    negative = ops.where(hit, ops.cast(_MASKED, negative.dtype), negative)
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


class SampledSoftmaxTrainer(RecommenderTrainer):
    """Wraps a built `SASRec`/`FAME` for sampled-softmax `fit`; the wrapped model's weights are trained.

    Its call takes `SampledBatches`' input dict and returns `sampled_logits`
    from the model's own user vectors (every position; FAME: the gated
    facets, Eq. 11) and item vectors (FAME: the projected table). Validation
    callbacks that rank (`FullRankingEvaluation`) use the wrapped model's
    scorer. Save the wrapped model, not the trainer.
    """

    def call(self, inputs, training=None):
        features, item_table = self.encoder(inputs["item_ids"], training=training)
        user, items, facets, _ = score_factors_of(self.head, features, item_table, training=training)
        logits = sampled_logits(
            user, items, inputs["targets"], inputs["candidates"], inputs["candidate_log_q"], inputs["target_log_q"]
        )
        return self._outputs(logits, facets)
