"""A million items on one CPU machine: generate, train with a sampled softmax, evaluate and export in chunks.

    python benchmarks/million_items.py --out results/million_items.json            # 10^6 users and items
    python benchmarks/million_items.py --users 20000 --items 20000 --steps 20        # a quick look

    python benchmarks/million_items.py --data clustered --model fame --epochs 20 --optimizer lazy_adam \
        --out results/million_items_clustered_fame.json                         # trained until validation stops

Stages, each timed, with the process's peak resident memory after each:
1. `--data zipf` (`zipf_sessions`): ~10^7 events, Zipf popularity, a next item
   near the previous id; `--data clustered` (`clustered_sessions`): items in
   clusters of `--cluster-size`, the next item in the current cluster with
   probability `--stay` (a model must learn the clusters from co-occurrence).
2. `leave_one_out` (max_len 50).
3. `--model` SASRec or FAME (d = 64; FAME H = 2, N = 4, from a random start, or
   with `--from-sasrec PATH` transplanted from a SASRec saved by an earlier run's
   `--save-model PATH`, `FAME.from_sasrec`, the package's own SASRec -> FAME path)
   trained for `--steps` batches with a sampled softmax
   (`--negatives` uniform negatives per batch, log-Q corrected): the logits are
   `[batch, seq, 1 + negatives]`, never `[batch, seq, items]`. `--optimizer
   lazy_adam` updates only the item rows a step read (`keras_fame.optimizers`).
   With `--epochs E`: up to E full passes instead, each followed by the
   validation NDCG@10 of `--eval-users` users (full ranking, chunked); the best
   epoch's weights are kept and training stops after `--patience` epochs
   without a better one. Each epoch's seconds, validation and peak memory are
   recorded under `epochs`.
4. Full-ranking evaluation of `--eval-users` test users, every item a
   candidate, items scored `--chunk-size` at a time (`evaluate_model(chunk_size=)`).
   The users are drawn from `--seed` alone, so runs of one data and seed rank
   the same users; `paired_ndcg_at_10` holds the per-user NDCG@10 of the model
   minus popularity's and, with `--from-sasrec`, minus the starting SASRec's
   (evaluated before training, stage `start_model`): mean, standard error, 95%
   interval, p (`paired_ndcg`).
5. `recommend` for 1,000 users, and a SavedModel export whose signature ranks in
   chunks too, called once.
With `--steps` alone the quality numbers only show that learning happens (the
popularity-only and random baselines are printed beside them); the point is
time and memory. With `--epochs` they say whether the model learnt the data.
"""

import argparse
import dataclasses
import json
import math
import os
import resource
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_fame  # noqa: E402,I001  (first: it quiets TensorFlow's start-up lines)
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_fame.data import TrainingBatches, leave_one_out  # noqa: E402
from keras_fame.data.synthetic import clustered_sessions, zipf_sessions  # noqa: E402
from keras_fame.evaluation import evaluate_model, evaluate_ranking, ndcg_per_user  # noqa: E402
from keras_fame.experiments import provenance, write_json_atomic  # noqa: E402
from keras_fame.data import SampledBatches  # noqa: E402
from keras_fame.losses import SampledSoftmaxCrossEntropy  # noqa: E402
from keras_fame.optimizers import OPTIMIZERS, make_optimizer  # noqa: E402
from keras_fame.training import SampledSoftmaxTrainer, fit_with_early_stopping  # noqa: E402


def peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


class EpochRecord(keras.callbacks.Callback):
    """Each epoch's loss and the process's peak memory; checkpointed with the run (`RESUME_STATE`)."""

    RESUME_STATE = ("rows",)

    def __init__(self):
        super().__init__()
        self.rows = []

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.rows.append({"epoch": epoch + 1, "loss": round(float(logs.get("loss", float("nan"))), 4),
                          "peak_rss_gb": round(peak_rss_gb(), 2)})
        print(f"     epoch {epoch + 1}: loss {self.rows[-1]['loss']}  val NDCG@10 {logs.get('val_ndcg@10', 0):.4f}  "
              f"peak RSS {self.rows[-1]['peak_rss_gb']} GB", flush=True)


def train_epochs(model, split, validation, args):
    """Full passes with the sampled softmax until `args.patience` epochs bring no better validation NDCG@10.

    `fit_with_early_stopping` on `split` with `validation` as its validation
    users (ranked `args.chunk_size` items at a time): the best epoch's
    weights are kept, and with `--checkpoint-dir` every finished epoch is
    checkpointed, so a killed run continues from its last one. Returns the
    per-epoch rows and the fit report.
    """
    record = EpochRecord()
    report = fit_with_early_stopping(
        model, dataclasses.replace(split, validation=validation), args.epochs, batch_size=args.batch_size,
        patience=args.patience, seed=args.seed, verbose=0, negatives=args.negatives, sampler="uniform",
        optimizer=args.optimizer, checkpoint_dir=args.checkpoint_dir, evaluation_chunk_size=args.chunk_size,
        callbacks=[record],
    )
    memory = {row["epoch"]: row for row in record.rows}
    epochs = []
    for seconds, metrics in zip(report["seconds_per_epoch"], report["validation_history"]):
        row = memory.get(metrics["epoch"], {})
        epochs.append({"epoch": metrics["epoch"], "train_seconds": round(seconds, 1), "loss": row.get("loss"),
                       "val_ndcg@10": round(metrics["ndcg@10"], 4), "val_hr@10": round(metrics["hr@10"], 4),
                       "peak_rss_gb": row.get("peak_rss_gb")})
    return epochs, report


def paired_ndcg(ranks_a, ranks_b, k=10):
    """Per-user NDCG@k of ranker B minus ranker A, both ranking the same users' targets.

    Args:
        ranks_a, ranks_b: int `[users]`, 0-based target ranks in the same user order.
        k: the cut-off.

    Returns:
        dict: `users`; `mean_difference` (B - A, the difference of the two NDCG@k means);
        `standard_error` (sample std of the per-user differences / sqrt(users)); `ci95`
        (mean +- 1.96 standard errors); `p_two_sided` (normal approximation of the paired
        t-test: `erfc(|mean / standard_error| / sqrt 2)`, fine at thousands of users);
        `users_b_better` / `users_a_better` (users whose NDCG@k differs, by sign).
    """
    ranks_a, ranks_b = np.asarray(ranks_a), np.asarray(ranks_b)
    if ranks_a.shape != ranks_b.shape or ranks_a.ndim != 1 or len(ranks_a) < 2:
        raise ValueError(f"paired ranks need the same users, at least 2: shapes {ranks_a.shape} and {ranks_b.shape}")
    diff = ndcg_per_user(ranks_b, k) - ndcg_per_user(ranks_a, k)
    mean, se = float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(len(diff)))
    p = math.erfc(abs(mean / se) / math.sqrt(2)) if se > 0 else (1.0 if mean == 0 else 0.0)
    return {"users": int(len(diff)), "mean_difference": mean, "standard_error": se,
            "ci95": [mean - 1.96 * se, mean + 1.96 * se], "p_two_sided": p,
            "users_b_better": int((diff > 0).sum()), "users_a_better": int((diff < 0).sum())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--mean-length", type=float, default=10)
    parser.add_argument("--steps", type=int, default=300, help="training batches")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--negatives", type=int, default=256)
    parser.add_argument("--eval-users", type=int, default=10_000)
    parser.add_argument("--chunk-size", type=int, default=65_536)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    parser.add_argument("--data", choices=("zipf", "clustered"), default="zipf")
    parser.add_argument("--cluster-size", type=int, default=50)
    parser.add_argument("--stay", type=float, default=0.8)
    parser.add_argument("--model", choices=("sasrec", "fame"), default="sasrec")
    parser.add_argument("--epochs", type=int, help="full passes with validation and early stopping (not --steps)")
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--checkpoint-dir", help="with --epochs: checkpoint every epoch here and continue a killed run "
                        "from its last finished epoch (removed when training ends)")
    parser.add_argument("--save-model", help="save the trained model here (a .keras file), e.g. for --from-sasrec")
    parser.add_argument("--from-sasrec", help="with --model fame: start FAME from this SASRec .keras file (trained on "
                        "the same data and seed, e.g. by --model sasrec --save-model)")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.save_model and not args.save_model.endswith(".keras"):
        parser.error(f"--save-model must name a .keras file, got {args.save_model!r}")
    if args.from_sasrec and args.model != "fame":
        parser.error("--from-sasrec needs --model fame")
    if args.from_sasrec and not os.path.isfile(args.from_sasrec):
        parser.error(f"--from-sasrec: no such file: {args.from_sasrec}")
    report = {**provenance(sys.argv if argv is None else ["million_items.py", *argv]), "settings": vars(args),
              "stages": {}}

    def stage(name, seconds, **extra):
        report["stages"][name] = {"seconds": round(seconds, 2), "peak_rss_gb": round(peak_rss_gb(), 2), **extra}
        print(f"{name:>10}: {seconds:8.1f} s   peak RSS {peak_rss_gb():6.2f} GB   {extra or ''}", flush=True)

    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    if args.data == "clustered":
        data = clustered_sessions(args.users, args.items, cluster_size=args.cluster_size, stay=args.stay,
                                  mean_length=args.mean_length, seed=args.seed)
    else:
        data = zipf_sessions(args.users, args.items, mean_length=args.mean_length, seed=args.seed)
    stage("generate", time.perf_counter() - start, events=int(data.num_events))

    start = time.perf_counter()
    split = leave_one_out(data, max_len=50)
    del data
    stage("split", time.perf_counter() - start, train_positions=int(split.num_train_positions))

    # The users are drawn before training, in the order earlier runs drew them (validation, then test), so runs
    # of the same data and seed rank the same users and their per-user ranks pair up.
    rng = np.random.default_rng(args.seed)
    if args.epochs:
        validation = split.validation.subset(
            np.sort(rng.choice(len(split.validation), size=min(args.eval_users, len(split.validation)), replace=False)))
    sample = np.sort(rng.choice(len(split.test), size=min(args.eval_users, len(split.test)), replace=False))
    test = split.test.subset(sample)

    start_ranks = None
    if args.from_sasrec:
        start = time.perf_counter()
        sasrec = keras.saving.load_model(args.from_sasrec)
        if not isinstance(sasrec, keras_fame.SASRec) or sasrec.num_items != args.items:
            raise SystemExit(f"--from-sasrec {args.from_sasrec}: not a SASRec over --items {args.items} items "
                             f"(got {type(sasrec).__name__} with {getattr(sasrec, 'num_items', '?')} items)")
        # The SASRec FAME starts from, on the test users FAME is evaluated on: the transplant's paired baseline.
        start_metrics = evaluate_model(sasrec, test, chunk_size=args.chunk_size, return_ranks=True)
        start_ranks = start_metrics.pop("ranks")
        stage("start_model", time.perf_counter() - start, ndcg_at_10=round(start_metrics["ndcg@10"], 4),
              hr_at_10=round(start_metrics["hr@10"], 4))
        model = keras_fame.FAME.from_sasrec(sasrec, num_heads=2, num_experts=4, seed=args.seed)
        del sasrec
    elif args.model == "fame":
        model = keras_fame.FAME(args.items, hidden_dim=64, num_heads=2, num_experts=4, max_len=50, dropout=0.2)
    else:
        model = keras_fame.SASRec(args.items, hidden_dim=64, num_heads=2, max_len=50, dropout=0.2)
    start = time.perf_counter()
    if args.epochs:
        report["epochs"], fitted = train_epochs(model, split, validation, args)
        best = max(report["epochs"], key=lambda e: e["val_ndcg@10"])
        resumed = {"resumed_from_epoch": fitted["resumed_from_epoch"]} if "resumed_from_epoch" in fitted else {}
        stage("train", time.perf_counter() - start, epochs=len(report["epochs"]), best_epoch=best["epoch"],
              best_val_ndcg_at_10=best["val_ndcg@10"],
              steps_per_epoch=len(TrainingBatches(split.train_inputs, split.train_targets, batch_size=args.batch_size)),
              **resumed)
    else:
        trainer = SampledSoftmaxTrainer(model)
        trainer.compile(optimizer=make_optimizer(args.optimizer, 1e-3), loss=SampledSoftmaxCrossEntropy())
        batches = TrainingBatches(split.train_inputs, split.train_targets, batch_size=args.batch_size, seed=args.seed)
        sampled = SampledBatches(batches, args.items, num_negatives=args.negatives, sampler="uniform", seed=args.seed)
        history = trainer.fit(sampled, epochs=1, steps_per_epoch=min(args.steps, len(sampled)), verbose=0,
                              shuffle=False)
        seconds = time.perf_counter() - start
        stage("train", seconds, steps=min(args.steps, len(sampled)), loss=round(float(history.history["loss"][-1]), 4),
              steps_per_second=round(min(args.steps, len(sampled)) / seconds, 2))

    start = time.perf_counter()
    metrics = evaluate_model(model, test, chunk_size=args.chunk_size, return_ranks=True)
    popularity = np.bincount(split.train_targets.ravel(), minlength=args.items + 1).astype(np.float64)
    popularity[0] = -np.inf
    baseline = evaluate_ranking(lambda x: np.broadcast_to(popularity, (len(x), args.items + 1)), test, batch_size=64,
                                return_ranks=True)
    stage("evaluate", time.perf_counter() - start, users=len(sample), ndcg_at_10=round(metrics["ndcg@10"], 4),
          hr_at_10=round(metrics["hr@10"], 4), popularity_ndcg_at_10=round(baseline["ndcg@10"], 4),
          random_hr_at_10=round(10 / args.items, 6))
    # The model against each baseline on the same users: per-user NDCG@10 differences (model minus baseline).
    report["paired_ndcg_at_10"] = {"popularity": paired_ndcg(baseline["ranks"], metrics["ranks"])}
    if start_ranks is not None:
        report["paired_ndcg_at_10"]["start_model"] = paired_ndcg(start_ranks, metrics["ranks"])

    start = time.perf_counter()
    histories = [test.history_items[test.history_indptr[u] : test.history_indptr[u + 1]] for u in range(min(1000, len(test)))]
    top = model.recommend(histories, k=10, chunk_size=args.chunk_size)["item_ids"]
    stage("recommend", time.perf_counter() - start, users=len(histories), shape=list(top.shape))

    start = time.perf_counter()
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        path = keras_fame.export_saved_model(model, tempfile.mkdtemp(prefix="million-"), k=10, chunk_size=args.chunk_size)
        served = tf.saved_model.load(path).signatures["serving_default"](item_ids=tf.constant(test.inputs[:64]))
        same = bool((served["item_ids"].numpy() == model.recommend(test.inputs[:64], k=10)["item_ids"]).all())
        stage("export", time.perf_counter() - start, served_equals_recommend=same)

    if args.save_model:
        model.save(args.save_model)
    report["peak_rss_gb"] = round(peak_rss_gb(), 2)
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=1))
    if args.out:
        write_json_atomic(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
