"""Batches for a sampled softmax: each batch's shared candidate items and their log sampling probabilities.

Full-softmax training materialises `[batch, seq, num_items + 1]` scores; with
10^6 items that does not fit. A sampled softmax scores only a shared set of
`C` candidates per batch (`[batch, seq, 1 + C]`):

    trainer = SampledSoftmaxTrainer(model)            # keras_fame.training; shares the model's weights
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), loss=SampledSoftmaxCrossEntropy())
    trainer.fit(SampledBatches(batches, model.num_items, num_negatives=256, sampler="uniform"),
                callbacks=[FullRankingEvaluation(split.validation)], shuffle=False)

Samplers (drawn in the data pipeline, so this works on every backend without a
custom `train_step`):
- `"uniform"`: `C` items drawn uniformly (with replacement) from `1..num_items`;
- `"popularity"`: `C` items drawn by training frequency (the distribution in-batch
  negatives follow), with replacement;
- `"in_batch"`: the batch's own targets are the candidates (`C` = the batch's cells).
- `"mixed"`: the batch's own targets plus `C` uniform draws (mixed negative sampling, Yang et al.,
  WWW'20): popular items from the batch, the long tail from the uniform part; every candidate's
  `log q` is that of the mixture, `q(i) = (B p(i) + C / |V|) / (B + C)` with `B` the batch's targets
  and `p` the training frequency.

The log-Q correction and the masking of accidental hits are
`keras_fame.losses.sampled_logits`'.
"""

import keras
import numpy as np

SAMPLERS = ("uniform", "popularity", "in_batch", "mixed")


class SampledBatches(keras.utils.PyDataset):
    """`TrainingBatches` plus each batch's candidate items and their log sampling probabilities.

    Batch `i` of epoch `e` draws its candidates from `(seed, e, i)`, so a
    resumed epoch sees the same ones.

    Args:
        batches: a `keras_fame.data.TrainingBatches`.
        num_items: catalog size.
        num_negatives: `C` for the `"uniform"` and `"popularity"` samplers,
            the uniform part of `"mixed"`.
        sampler: one of `SAMPLERS`.
        item_counts: int `[num_items + 1]` training frequencies (default:
            counted from `batches.targets`), for `"popularity"`, `"in_batch"`
            and `"mixed"`.
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
        self._q = q
        self.log_q = np.log(q).astype(np.float32)
        self._cdf = np.cumsum(q[1:] / q[1:].sum())

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        inputs, targets = self.batches[index]
        log_q = self.log_q.__getitem__
        if self.sampler == "in_batch":
            candidates = targets.reshape(-1).astype(np.int32)
        else:
            rng = np.random.default_rng([int(self.seed or 0), int(self.batches.epoch), int(index)])
            if self.sampler == "popularity":
                draws = np.searchsorted(self._cdf, rng.random(self.num_negatives), side="right") + 1
            else:
                draws = rng.integers(1, self.num_items + 1, size=self.num_negatives)
            candidates = np.minimum(draws, self.num_items).astype(np.int32)
            if self.sampler == "mixed":
                candidates = np.concatenate([targets.reshape(-1).astype(np.int32), candidates])  # padding: masked
                log_q = self._mixture_log_q(int(np.count_nonzero(targets)))
        x = {
            "item_ids": inputs,
            "targets": targets,
            "candidates": candidates,
            "candidate_log_q": log_q(candidates),
            "target_log_q": log_q(targets),
        }
        return x, targets

    def _mixture_log_q(self, in_batch):
        """`ids -> log q(ids)` of the `"mixed"` sampler's mixture, read only at the ids (never all `V`)."""

        def log_q(ids):
            q = (in_batch * self._q[ids] + self.num_negatives / self.num_items) / (in_batch + self.num_negatives)
            return np.log(np.where(ids == 0, 1.0, q)).astype(np.float32)

        return log_q

    def on_epoch_end(self):
        self.batches.on_epoch_end()

    def set_epoch(self, epoch):
        self.batches.set_epoch(epoch)
