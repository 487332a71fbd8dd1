"""The exported `serving_default` signature under concurrent load (TF Serving's code path, in-process).

    python benchmarks/serving_load.py runs/toys/fame.keras            # a trained model
    python benchmarks/serving_load.py --toys-sized                    # fresh FAME, Toys sizes
    python benchmarks/serving_load.py --toys-sized --out results/serving_load_toys_fame_h2n4.json

Exports the model (`keras_fame.export.export_saved_model`), loads the SavedModel with
`tf.saved_model.load` (no Keras on the call path), and drives it from `--threads` client threads
(default 8), each sending `--requests` requests of batch 1 and then of batch 32 (random histories of
length 1..max_len, some with padding only). For each batch size it reports throughput (requests/s and
rows/s), per-request latency p50/p99, and errors, which must be 0: an exception, a wrong output shape,
padding (id 0) or an item of the request's own history in the top-k. The whole load runs `--rounds`
times (default 3); memory is the process RSS after a warm-up and after each round: a leak grows from
round to round, while the allocator's one-off growth for the larger concurrent batches shows once.
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_BACKEND"] = "tensorflow"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_fame  # noqa: E402
from keras_fame.export import export_saved_model  # noqa: E402
from keras_fame.experiments import machine_description  # noqa: E402


def rss_mib():
    """Resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def random_requests(rng, count, batch, max_len, num_items):
    requests = []
    for _ in range(count):
        ids = np.zeros((batch, max_len), np.int32)
        for r, n in enumerate(rng.integers(0, max_len + 1, size=batch)):  # n = 0: padding only
            ids[r, max_len - n :] = rng.integers(1, num_items + 1, size=n)
        requests.append(ids)
    return requests


def check(ids, top, k):
    """The errors in one answer: shape, padding in the top-k, history items in the top-k."""
    if top.shape != (len(ids), k):
        return [f"shape {top.shape}, expected {(len(ids), k)}"]
    errors = []
    if (top == 0).any():
        errors.append("padding id 0 in the top-k")
    for row, answer in zip(ids, top):
        if np.intersect1d(row[row > 0], answer).size:
            errors.append("an item of the request's history in the top-k")
            break
    return errors


def drive(serve, requests_per_thread, threads, k):
    """Runs every thread's requests concurrently; returns latencies (ms), errors and the wall time."""
    latencies, errors = [[] for _ in range(threads)], [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def client(t):
        barrier.wait()
        for ids in requests_per_thread[t]:
            start = time.perf_counter()
            try:
                top = serve(item_ids=tf.constant(ids))["item_ids"].numpy()
            except Exception as error:  # counted, not raised: the benchmark reports every failure
                errors[t].append(f"{type(error).__name__}: {error}")
                continue
            latencies[t].append((time.perf_counter() - start) * 1e3)
            errors[t].extend(check(ids, top, k))

    workers = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    wall = time.perf_counter() - start
    return np.concatenate([np.asarray(x, float) for x in latencies]), sum(errors, []), wall


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="a trained .keras model (default: --toys-sized)")
    parser.add_argument("--toys-sized", action="store_true", help="a fresh FAME(11924 items, d=64, H=2, N=4)")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="requests per thread and batch size")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--rounds", type=int, default=3, help="the whole load this many times (a leak grows per round)")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--out", help="also write the report as JSON here")
    args = parser.parse_args(argv)
    if not args.model and not args.toys_sized:
        parser.error("give a .keras model or --toys-sized")

    keras.utils.set_random_seed(0)
    model = (keras.saving.load_model(args.model, safe_mode=True) if args.model
             else keras_fame.FAME(11924, hidden_dim=64, heads=2, experts=4))
    rng = np.random.default_rng(0)
    report = {
        "model": args.model or "fresh FAME(11924 items, d=64, H=2, N=4)", "k": args.k, "threads": args.threads,
        "requests_per_thread": args.requests, "machine": machine_description(),
        "command": "python benchmarks/serving_load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        serve = tf.saved_model.load(export_saved_model(model, tmp, k=args.k)).signatures["serving_default"]
        del model
        for batch in args.batches:  # warm-up: trace every shape once, let the allocator settle
            drive(serve, [random_requests(rng, 20, batch, 50, 11924)] * args.threads, args.threads, args.k)
        report["rss_mib_after_warmup"] = round(rss_mib(), 1)
        rss = []
        for round_ in range(args.rounds):
            for batch in args.batches:
                load = [random_requests(rng, args.requests, batch, 50, 11924) for _ in range(args.threads)]
                latencies, errors, wall = drive(serve, load, args.threads, args.k)
                total = args.threads * args.requests
                report[f"round_{round_ + 1}_batch_{batch}"] = {
                    "requests": total,
                    "requests_per_s": round(total / wall, 1),
                    "rows_per_s": round(total * batch / wall, 1),
                    "p50_ms": round(float(np.percentile(latencies, 50)), 2),
                    "p99_ms": round(float(np.percentile(latencies, 99)), 2),
                    "errors": len(errors),
                    "first_errors": errors[:5],
                }
            rss.append(round(rss_mib(), 1))
    report["rss_mib_after_each_round"] = rss
    report["rss_growth_mib_first_to_last_round"] = round(rss[-1] - rss[0], 1)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 1 if any(v["errors"] for k, v in report.items() if k.startswith("round_")) else 0


if __name__ == "__main__":
    sys.exit(main())
