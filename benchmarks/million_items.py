"""A million items on one CPU machine: generate, train with a sampled softmax, evaluate and export in chunks.

    python benchmarks/million_items.py --out results/million_items.json            # 10^6 users and items
    python benchmarks/million_items.py --users 20000 --items 20000 --steps 20        # a quick look

Stages, each timed, with the process's peak resident memory after each:
1. `zipf_sessions`: ~10^7 events, Zipf popularity, a learnable next-item pattern.
2. `leave_one_out` (max_len 50).
3. SASRec (d = 64) trained for `--steps` batches with a sampled softmax
   (`--negatives` uniform negatives per batch, log-Q corrected): the logits are
   `[batch, seq, 1 + negatives]`, never `[batch, seq, items]`. `--optimizer
   lazy_adam` updates only the item rows a step read (`keras_fame.optimizers`).
4. Full-ranking evaluation of `--eval-users` test users, every item a
   candidate, items scored `--chunk-size` at a time (`evaluate_model(chunk_size=)`).
5. `recommend` for 1,000 users, and a SavedModel export whose signature ranks in
   chunks too, called once.
The quality numbers after so few steps only show that learning happens (the
popularity-only and random baselines are printed beside them); the point is
time and memory.
"""

import argparse
import json
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
from keras_fame.data.synthetic import zipf_sessions  # noqa: E402
from keras_fame.evaluation import evaluate_model  # noqa: E402
from keras_fame.experiments import machine_description  # noqa: E402
from keras_fame.data import SampledBatches  # noqa: E402
from keras_fame.losses import SampledSoftmaxCrossEntropy  # noqa: E402
from keras_fame.optimizers import OPTIMIZERS, make_optimizer  # noqa: E402
from keras_fame.training import SampledSoftmaxTrainer  # noqa: E402


def peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


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
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    report = {"command": "python benchmarks/million_items.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": machine_description(), "settings": vars(args), "stages": {}}

    def stage(name, seconds, **extra):
        report["stages"][name] = {"seconds": round(seconds, 2), "peak_rss_gb": round(peak_rss_gb(), 2), **extra}
        print(f"{name:>10}: {seconds:8.1f} s   peak RSS {peak_rss_gb():6.2f} GB   {extra or ''}", flush=True)

    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    data = zipf_sessions(args.users, args.items, mean_length=args.mean_length, seed=args.seed)
    stage("generate", time.perf_counter() - start, events=int(data.num_events))

    start = time.perf_counter()
    split = leave_one_out(data, max_len=50)
    del data
    stage("split", time.perf_counter() - start, train_positions=int(split.num_train_positions))

    start = time.perf_counter()
    model = keras_fame.SASRec(args.items, hidden_dim=64, num_heads=2, max_len=50, dropout=0.2)
    trainer = SampledSoftmaxTrainer(model)
    trainer.compile(optimizer=make_optimizer(args.optimizer, 1e-3), loss=SampledSoftmaxCrossEntropy())
    batches = TrainingBatches(split.train_inputs, split.train_targets, batch_size=args.batch_size, seed=args.seed)
    sampled = SampledBatches(batches, args.items, num_negatives=args.negatives, sampler="uniform", seed=args.seed)
    history = trainer.fit(sampled, epochs=1, steps_per_epoch=min(args.steps, len(sampled)), verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    stage("train", seconds, steps=min(args.steps, len(sampled)), loss=round(float(history.history["loss"][-1]), 4),
          steps_per_second=round(min(args.steps, len(sampled)) / seconds, 2))

    rng = np.random.default_rng(args.seed)
    sample = np.sort(rng.choice(len(split.test), size=min(args.eval_users, len(split.test)), replace=False))
    test = split.test.subset(sample)
    start = time.perf_counter()
    metrics = evaluate_model(model, test, chunk_size=args.chunk_size)
    popularity = np.bincount(split.train_targets.ravel(), minlength=args.items + 1).astype(np.float64)
    popularity[0] = -np.inf
    from keras_fame.evaluation import evaluate_ranking

    baseline = evaluate_ranking(lambda x: np.broadcast_to(popularity, (len(x), args.items + 1)), test, batch_size=64)
    stage("evaluate", time.perf_counter() - start, users=len(sample), ndcg_at_10=round(metrics["ndcg@10"], 4),
          hr_at_10=round(metrics["hr@10"], 4), popularity_ndcg_at_10=round(baseline["ndcg@10"], 4),
          random_hr_at_10=round(10 / args.items, 6))

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

    report["peak_rss_gb"] = round(peak_rss_gb(), 2)
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=1))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
