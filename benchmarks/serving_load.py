"""The exported signatures under load, in-process through `tf.saved_model.load` (TF Serving's code path).

    python benchmarks/serving_load.py runs/toys/fame.keras                       # a trained model, 8 threads
    python benchmarks/serving_load.py runs/toys/fame.keras --item-ids ids.json   # + the string-id signature
    python benchmarks/serving_load.py runs/toys/fame.keras --threads 1 --tf-threads 1 --batches 1 32
    python benchmarks/serving_load.py --toys-sized                               # a fresh FAME of Toys' sizes

Exports the model (`keras_fame.export.export_saved_model`, with `--item-ids` also `serving_strings`), loads
the SavedModel with `tf.saved_model.load` (no Keras on the call path) and drives each signature from
`--threads` client threads, each sending `--requests` requests per batch size (random histories of length
0..max_len over the model's own catalogue, so some rows are padding only; string requests carry one id the
mapping does not know, which must come back in `unknown_items`). For each signature and batch size it
reports throughput (requests/s, rows/s), per-request latency p50/p99 and errors, which must be 0: an
exception, a wrong output shape, padding or an item of the request's own history in the top-k, an id
outside the mapping, or a wrong `unknown_items`. `--tf-threads 1` pins TensorFlow's intra- and inter-op
pools to one thread (with `--threads 1`: the single-threaded latency). The whole load runs `--rounds`
times; memory is the process RSS after a warm-up and after each round (a leak grows from round to round,
the allocator's one-off growth for larger concurrent batches shows once). Exit status 1 if any error.
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
from keras_fame.data.preprocess import load_item_ids  # noqa: E402
from keras_fame.experiments import provenance  # noqa: E402
from keras_fame.export import export_saved_model  # noqa: E402

UNKNOWN = "not-in-the-catalogue"


def rss_mib():
    """Resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def random_requests(rng, count, batch, max_len, num_items):
    """`count` int32 `[batch, max_len]` requests: each row a history of 0..max_len items, left-padded."""
    requests = []
    for _ in range(count):
        ids = np.zeros((batch, max_len), np.int32)
        for r, n in enumerate(rng.integers(0, max_len + 1, size=batch)):  # n = 0: padding only
            ids[r, max_len - n :] = rng.integers(1, num_items + 1, size=n)
        requests.append(ids)
    return requests


def as_strings(ids, names):
    """The string form of an int request: each id's name, "" for padding, and one unknown id in row 0."""
    strings = names[ids].astype(object)
    strings[0, 0] = UNKNOWN
    return strings


def check(ids, out, k, names=None):
    """The errors in one answer: shape, padding or history items in the top-k, unknown ids miscounted."""
    top = out["item_ids"].numpy()
    if top.shape != (len(ids), k):
        return [f"shape {top.shape}, expected {(len(ids), k)}"]
    errors = []
    if names is not None:
        index = {name: i for i, name in enumerate(names)}
        if any(name.decode() not in index or not name for name in top.ravel()):
            return ["an id outside the mapping in the top-k"]
        top = np.vectorize(lambda name: index[name.decode()])(top)
        unknown = out["unknown_items"].numpy()
        if unknown[0] != 1 or unknown[1:].any():
            errors.append(f"unknown_items {unknown.tolist()}, expected 1 then 0s")
    if (top == 0).any():
        errors.append("padding in the top-k")
    for row, answer in zip(ids, top):
        if np.intersect1d(row[row > 0], answer).size:
            errors.append("an item of the request's history in the top-k")
            break
    return errors


def drive(serve, requests_per_thread, threads, k, names=None):
    """Runs every thread's requests concurrently; returns latencies (ms), errors and the wall time."""
    latencies, errors = [[] for _ in range(threads)], [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def client(t):
        barrier.wait()
        for ids in requests_per_thread[t]:
            request = tf.constant(ids if names is None else as_strings(ids, names))
            start = time.perf_counter()
            try:
                out = serve(item_ids=request)
            except Exception as error:  # counted, not raised: the benchmark reports every failure
                errors[t].append(f"{type(error).__name__}: {error}")
                continue
            latencies[t].append((time.perf_counter() - start) * 1e3)
            errors[t].extend(check(ids, out, k, names))

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
    parser.add_argument("model", nargs="?", help="a trained .keras model (or --toys-sized)")
    parser.add_argument("--toys-sized", action="store_true", help="a fresh FAME(11924 items, d=64, H=2, N=4)")
    parser.add_argument("--item-ids", metavar="FILE",
                        help="an item-id mapping (JSON: internal id -> the user's id): also load `serving_strings`")
    parser.add_argument("--threads", type=int, default=8, help="client threads")
    parser.add_argument("--tf-threads", type=int, default=0,
                        help="TensorFlow's intra- and inter-op threads (0: TensorFlow's default)")
    parser.add_argument("--requests", type=int, default=200, help="requests per thread and batch size")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--rounds", type=int, default=3, help="the whole load this many times (a leak grows per round)")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--out", help="also write the report as JSON here")
    args = parser.parse_args(argv)
    if bool(args.model) == bool(args.toys_sized):
        parser.error("give a .keras model or --toys-sized (one of them)")
    for name in ("threads", "requests", "rounds", "k"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}={getattr(args, name)}: must be a positive integer")
    if args.tf_threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(args.tf_threads)
            tf.config.threading.set_inter_op_parallelism_threads(args.tf_threads)
        except RuntimeError:  # TensorFlow already started in this process (an in-process call)
            parser.error("--tf-threads needs a fresh process: TensorFlow's thread pools are already running")

    keras.utils.set_random_seed(0)
    model = (keras.saving.load_model(args.model, safe_mode=True) if args.model
             else keras_fame.FAME(11924, hidden_dim=64, heads=2, experts=4))
    num_items, max_len = model.num_items, model.max_len
    names = None
    if args.item_ids:
        forward, _ = load_item_ids(args.item_ids)
        names = np.array([""] + [forward[i] for i in range(1, num_items + 1)], dtype=object)
    report = {
        "model": args.model or "fresh FAME(11924 items, d=64, H=2, N=4)", "num_items": num_items, "max_len": max_len,
        "k": args.k, "threads": args.threads, "tf_threads": args.tf_threads or "default",
        "requests_per_thread": args.requests, **provenance(sys.argv if argv is None else ["serving_load.py", *argv]),
    }
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        mapping = forward if names is not None else None
        loaded = tf.saved_model.load(export_saved_model(model, tmp, k=args.k, item_ids=mapping))
        del model
        signatures = {"serving_default": (loaded.signatures["serving_default"], None)}
        if names is not None:
            signatures["serving_strings"] = (loaded.signatures["serving_strings"], names)
        for serve, strings in signatures.values():  # warm-up: trace every shape once, let the allocator settle
            for batch in args.batches:
                warm = [random_requests(rng, 20, batch, max_len, num_items)] * args.threads
                drive(serve, warm, args.threads, args.k, strings)
        report["rss_mib_after_warmup"] = round(rss_mib(), 1)
        rss = []
        for round_ in range(args.rounds):
            for signature, (serve, strings) in signatures.items():
                for batch in args.batches:
                    load = [random_requests(rng, args.requests, batch, max_len, num_items) for _ in range(args.threads)]
                    latencies, errors, wall = drive(serve, load, args.threads, args.k, strings)
                    total = args.threads * args.requests
                    report[f"round_{round_ + 1}_{signature}_batch_{batch}"] = {
                        "requests": total,
                        "requests_per_s": round(total / wall, 1),
                        "rows_per_s": round(total * batch / wall, 1),
                        "p50_ms": round(float(np.percentile(latencies, 50)), 3),
                        "p99_ms": round(float(np.percentile(latencies, 99)), 3),
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
