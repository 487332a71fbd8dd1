"""CPU latency of the exported `serving_default` signature (TF Serving's code path, in-process).

    python benchmarks/serving_latency.py runs/toys_fame_h2n4/fame.keras   # a trained model
    python benchmarks/serving_latency.py --toys-sized                     # fresh FAME, Toys sizes

Loads the SavedModel with `tf.saved_model.load` (no Keras on the call path) and times the signature
on random histories of length 1..50, batch 1 and batch 256; prints p50/p99 in milliseconds.
"""

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_BACKEND"] = "tensorflow"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_fame  # noqa: E402
from keras_fame.export import export_saved_model  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("model", nargs="?")
parser.add_argument("--toys-sized", action="store_true")
parser.add_argument("--k", type=int, default=20)
parser.add_argument("--repeats", type=int, default=300)
args = parser.parse_args()

if args.model:
    model = keras.saving.load_model(args.model, safe_mode=True)
else:
    model = keras_fame.FAME(11924, hidden_dim=64, heads=2, experts=4)
with tempfile.TemporaryDirectory() as tmp:
    path = export_saved_model(model, tmp, k=args.k)
    serve = tf.saved_model.load(path).signatures["serving_default"]
    rng = np.random.default_rng(0)
    report = {"model": args.model or "fresh FAME(11924 items, d=64, H=2, N=4)", "k": args.k,
              "threads": tf.config.threading.get_intra_op_parallelism_threads(), "cpus": os.cpu_count()}
    for batch in (1, 256):
        times = []
        for i in range(args.repeats if batch == 1 else max(args.repeats // 10, 20)):
            ids = np.zeros((batch, 50), np.int32)
            lengths = rng.integers(1, 51, size=batch)
            for r, n in enumerate(lengths):
                ids[r, 50 - n :] = rng.integers(1, model.num_items + 1, size=n)
            request = tf.constant(ids)
            start = time.perf_counter()
            serve(item_ids=request)["item_ids"].numpy()
            times.append((time.perf_counter() - start) * 1e3)
        times = np.array(times[5:])  # warm-up
        report[f"batch_{batch}"] = {"p50_ms": round(float(np.percentile(times, 50)), 3),
                                     "p99_ms": round(float(np.percentile(times, 99)), 3), "calls": len(times)}
print(json.dumps(report, indent=2))
