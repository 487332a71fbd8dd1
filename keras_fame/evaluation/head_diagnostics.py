"""Does FAME's gate route? Gate entropy and each head's own ranking quality, per epoch."""

import numpy as np

import keras

from keras_fame.evaluation.ranking import DEFAULT_KS, history_mask_rows, metrics_from_ranks, target_ranks, top_k
from keras_fame.utils import predict_rows


def head_diagnostics(model, evaluation_set, ks=(10,), exclude_history=True, batch_size=256):
    """Gate statistics and per-head full-ranking metrics of a FAME model on `evaluation_set`.

    Each head `h` ranks items by its own score `s_h(v) = x_v^(h) . F^(h)`
    (the `head_scores` of `scorer(explain=True)`); the gated model ranks by
    Eq. 11, `sum_h g_h s_h(v)`. The gate's entropy `-sum_h g_h log g_h` is
    `log H` for a gate that ignores the user and 0 for one that always picks
    a single head.

    Whether routing could matter at all is measured beside it (ours):
    `uniform` ranks by `mean_h s_h(v)` (the gate replaced by `1/H`: the
    learned gate's whole contribution is `gated - uniform`); `oracle_head`
    gives each user the rank of their best head, `min_h rank_h` (an upper
    bound for any gate that picks one head per user, optimistic because it
    is chosen on the target); `head_top10_overlap` is the mean share of
    items two heads' top-10 lists (history excluded when `exclude_history`)
    have in common, over users and head pairs (1 when the heads agree).

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
        `gated` (the same metrics for the model), `uniform`, `oracle_head`
        (the same metrics), `head_top10_overlap` (float; None for H = 1) and
        `users`.
    """
    scorer = model.scorer(explain=True)
    ev = evaluation_set
    n = len(ev)
    gates, head_ranks, gated_ranks, uniform_ranks, overlaps = [], [], [], [], []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        out = predict_rows(scorer, ev.inputs[start:stop])
        exclude = history_mask_rows(ev.history_indptr, ev.history_items, start, stop) if exclude_history else None
        targets = ev.targets[start:stop]
        head_scores = np.asarray(out["head_scores"])
        gates.append(np.asarray(out["head_weights"], np.float64))
        head_ranks.append([target_ranks(head_scores[:, h], targets, exclude) for h in range(head_scores.shape[1])])
        gated_ranks.append(target_ranks(np.asarray(out["scores"]), targets, exclude))
        uniform_ranks.append(target_ranks(head_scores.mean(axis=1), targets, exclude))
        overlaps.append(_top10_overlap(head_scores, exclude))
    gates = np.concatenate(gates)
    num_heads = gates.shape[1]
    entropy = -(gates * np.log(np.maximum(gates, 1e-12))).sum(axis=1)
    ranks_by_head = np.stack([np.concatenate([r[h] for r in head_ranks]) for h in range(num_heads)])  # [H, users]
    per_head = [metrics_from_ranks(ranks, ks) for ranks in ranks_by_head]
    gated = metrics_from_ranks(np.concatenate(gated_ranks), ks)
    overlaps = np.concatenate(overlaps)
    top_share = np.bincount(gates.argmax(axis=1), minlength=num_heads) / max(n, 1)
    return {
        "users": int(n),
        "gate_entropy": float(entropy.mean()),
        "gate_entropy_max": float(np.log(num_heads)),
        "gate_mean": gates.mean(axis=0).tolist(),
        "gate_top_share": top_share.tolist(),
        "head_metrics": per_head,
        "gated": gated,
        "uniform": metrics_from_ranks(np.concatenate(uniform_ranks), ks),
        "oracle_head": metrics_from_ranks(ranks_by_head.min(axis=0), ks),
        "head_top10_overlap": float(overlaps.mean()) if num_heads > 1 and n else None,
    }


def _top10_overlap(head_scores, exclude, k=10):
    """`[rows]`: the mean over head pairs of `|top-k_a & top-k_b| / k` (padding and `exclude` left out)."""
    scores = np.array(head_scores, dtype=np.float64, copy=True)  # [rows, H, items + 1]
    scores[:, :, 0] = -np.inf
    if exclude is not None:
        rows, cols = exclude
        scores[rows, :, cols] = -np.inf
    ids, _ = top_k(scores, k)  # [rows, H, k]
    num_heads = ids.shape[1]
    pairs = [(a, b) for a in range(num_heads) for b in range(a + 1, num_heads)]
    if not pairs:
        return np.ones(len(ids))
    shared = [(ids[:, a, :, None] == ids[:, b, None, :]).any(axis=-1).sum(axis=-1) / k for a, b in pairs]
    return np.mean(shared, axis=0)


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
