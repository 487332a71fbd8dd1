"""Does FAME's gate route? Gate entropy and each head's own ranking quality, per epoch."""

import numpy as np

import keras

from keras_fame.evaluation.ranking import DEFAULT_KS, history_mask_rows, metrics_from_ranks, target_ranks
from keras_fame.utils import predict_rows


def head_diagnostics(model, evaluation_set, ks=(10,), exclude_history=True, batch_size=256):
    """Gate statistics and per-head full-ranking metrics of a FAME model on `evaluation_set`.

    Each head `h` ranks items by its own score `x_v^(h) . F^(h)` (the
    `head_scores` of `scorer(explain=True)`); the gated model ranks by
    Eq. 11. The gate's entropy `-sum_h g_h log g_h` is `log H` for a gate
    that ignores the user and 0 for one that always picks a single head.

    Args:
        model: a `FAME` (anything whose scorer returns `head_weights`).
        evaluation_set: `EvaluationSet` (e.g. a subset of `split.validation`).
        ks: cut-offs of the per-head metrics.
        exclude_history: ranking protocol.
        batch_size: users per batch.

    Returns:
        A dict: `gate_entropy` (mean, nats), `gate_entropy_max` (`log H`),
        `gate_mean` (list, mean weight per head), `gate_top_share` (list,
        the share of users whose largest weight is head `h`'s), and
        `head_metrics` (list per head of `{"ndcg@k": ..., "hr@k": ...}`),
        `gated` (the same metrics for the model), `users`.
    """
    scorer = model.scorer(explain=True)
    ev = evaluation_set
    n = len(ev)
    gates, head_ranks, gated_ranks = [], [], []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        out = predict_rows(scorer, ev.inputs[start:stop])
        exclude = history_mask_rows(ev.history_indptr, ev.history_items, start, stop) if exclude_history else None
        targets = ev.targets[start:stop]
        head_scores = np.asarray(out["head_scores"])
        gates.append(np.asarray(out["head_weights"], np.float64))
        head_ranks.append([target_ranks(head_scores[:, h], targets, exclude) for h in range(head_scores.shape[1])])
        gated_ranks.append(target_ranks(np.asarray(out["scores"]), targets, exclude))
    gates = np.concatenate(gates)
    num_heads = gates.shape[1]
    entropy = -(gates * np.log(np.maximum(gates, 1e-12))).sum(axis=1)
    per_head = [metrics_from_ranks(np.concatenate([r[h] for r in head_ranks]), ks) for h in range(num_heads)]
    gated = metrics_from_ranks(np.concatenate(gated_ranks), ks)
    top_share = np.bincount(gates.argmax(axis=1), minlength=num_heads) / max(n, 1)
    return {
        "users": int(n),
        "gate_entropy": float(entropy.mean()),
        "gate_entropy_max": float(np.log(num_heads)),
        "gate_mean": gates.mean(axis=0).tolist(),
        "gate_top_share": top_share.tolist(),
        "head_metrics": per_head,
        "gated": gated,
    }


class HeadDiagnostics(keras.callbacks.Callback):
    """Records `head_diagnostics` on a fixed sample of users after every epoch (FAME; SASRec is skipped).

    Writes `val_gate_entropy` and `val_head{h}_ndcg@10` into the epoch's
    `logs` (so `TensorBoard` and `History` see them) and keeps every
    epoch's full result in `history`.

    Args:
        evaluation_set: `EvaluationSet`; the first `num_users` rows are used.
        num_users: how many users to score (2048 by default: a few seconds).
        ks: cut-offs of the per-head metrics. Defaults to `(10,)`.
        exclude_history: ranking protocol. Defaults to True.

    Attributes:
        history: list of `(epoch, result)`.
    """

    RESUME_STATE = ("history",)  # restored by `keras_fame.training.TrainingCheckpoint`

    def __init__(self, evaluation_set, num_users=2048, ks=(10,), exclude_history=True):
        super().__init__()
        rows = np.arange(min(int(num_users), len(evaluation_set)))
        self.evaluation_set = evaluation_set.subset(rows)
        self.ks = tuple(ks or DEFAULT_KS)
        self.exclude_history = exclude_history
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        model = getattr(self.model, "recommender", self.model)
        if not model.has_gates:
            return
        result = head_diagnostics(model, self.evaluation_set, ks=self.ks, exclude_history=self.exclude_history)
        self.history.append((epoch, result))
        if logs is not None:
            logs["val_gate_entropy"] = result["gate_entropy"]
            for h, metrics in enumerate(result["head_metrics"]):
                for name, value in metrics.items():
                    logs[f"val_head{h}_{name}"] = value
