"""Serving a facet model at a large catalogue: the request latency with the item table rebuilt per call or snapshotted.

    python benchmarks/serving_table_snapshot.py --items 1000000 --out results/serving_table_snapshot_1m.json

A FAME with item facets scores against `ItemEmbedding.item_table()`, the ID table plus every item's facet
embeddings: `[V + 1, d]` gathers and adds. Three ranking functions of the same kind the SavedModel export
wraps (`model.ranker(k, chunk_size)` in a `tf.function`), timed per request (`--batch` histories of length 50):

- `plain`: FAME without facets (its table is a bare variable), the reference;
- `facets, table per request`: FAME with `--facets` random facets, its ranker computing the table per call (the
  export before `ItemTableSnapshot`);
- `facets, snapshot`: the same model, its ranker scoring against one `ItemTableSnapshot` (what
  `export_saved_model` does now), and the top-k of both checked equal.

`--warmup` calls each, then `--rounds` rounds in which each function serves one request in turn; the median
per function. Times are ratios within one run (another process on the machine changes absolute times;
taking turns spreads its effect over the three).
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_fame  # noqa: E402
from keras_fame.experiments import provenance, write_json_atomic  # noqa: E402
from keras_fame.models.retrieval import ItemTableSnapshot  # noqa: E402


def serving_function(ranker):
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None, None), tf.int32)])
    def serve(item_ids):
        return ranker(item_ids, training=False)

    return serve


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--facets", type=int, nargs=2, default=(5000, 800), metavar=("BRANDS", "CATEGORIES"),
                        help="labels of the two random facets")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--chunk-size", type=int, default=65536)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        parser.error("serving is timed as the SavedModel runs it: needs KERAS_BACKEND=tensorflow")

    rng = np.random.default_rng(0)
    facets = [rng.integers(0, size, args.items + 1).astype("int32") for size in args.facets]
    models = {}
    for name, kwargs in (("plain", {}), ("facets", {"item_facets": facets})):
        keras.utils.set_random_seed(0)
        models[name] = keras_fame.FAME(args.items, hidden_dim=64, num_heads=2, num_experts=4, max_len=50, **kwargs)
    ranking = dict(k=args.k, chunk_size=args.chunk_size)
    snapshot = ItemTableSnapshot(models["facets"])
    functions = {
        "plain": serving_function(models["plain"].ranker(**ranking)),
        "facets, table per request": serving_function(models["facets"].ranker(**ranking)),
        "facets, snapshot": serving_function(models["facets"].ranker(**ranking, table_snapshot=snapshot)),
    }
    request = rng.integers(1, args.items + 1, size=(args.batch, 50)).astype("int32")
    answers = {}
    for name, serve in functions.items():
        for _ in range(args.warmup):
            answers[name] = serve(request)
    same = bool(np.array_equal(answers["facets, table per request"]["item_ids"].numpy(),
                               answers["facets, snapshot"]["item_ids"].numpy()))
    times = {name: [] for name in functions}
    for _ in range(args.rounds):
        for name, serve in functions.items():
            start = time.perf_counter()
            serve(request)["item_ids"].numpy()
            times[name].append(time.perf_counter() - start)
    rows = {name: round(1000 * statistics.median(t), 1) for name, t in times.items()}
    print(f"{args.items} items, batch {args.batch}, chunk {args.chunk_size}: median ms per request")
    for name, ms in rows.items():
        print(f"  {name:28s} {ms:8.1f}   x{ms / rows['plain']:.2f} of plain")
    print(f"  the snapshot's top-{args.k} equals the per-request table's: {same}")
    if args.out:
        write_json_atomic(args.out, {
            **provenance(sys.argv if argv is None else ["serving_table_snapshot.py", *argv]),
            "settings": vars(args), "median_ms_per_request": rows, "top_k_equal": same,
        })
    return rows, same


if __name__ == "__main__":
    main()
