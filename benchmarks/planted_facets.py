"""SASRec vs FAME trained from scratch on planted-facet synthetic data.

    python benchmarks/planted_facets.py [--epochs 30] [--users 1500] [--out results/planted_facets.json]

Validation NDCG@10 (all_items) for two data sizes (16 x 16 and 32 x 32 items),
two seeds, d = 16, one block, and four models: SASRec (2 heads), FAME H=2
N=1, FAME H=2 N=2, and FAME H=2 N=2 with a random (glorot) start of W_f.
"""

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

from keras_fame import FAME, SASRec  # noqa: E402
from keras_fame.data import TrainingBatches, leave_one_out  # noqa: E402
from keras_fame.data.synthetic import planted_facets  # noqa: E402
from keras_fame.evaluation import evaluate_model  # noqa: E402
from keras_fame.experiments import provenance  # noqa: E402

MODELS = {
    "SASRec": lambda n, d: SASRec(n, hidden_dim=d, num_heads=2, num_blocks=1, max_len=20, dropout=0.1),
    "FAME N=1": lambda n, d: FAME(n, hidden_dim=d, num_heads=2, num_experts=1, num_blocks=1, max_len=20, dropout=0.1),
    "FAME N=2": lambda n, d: FAME(n, hidden_dim=d, num_heads=2, num_experts=2, num_blocks=1, max_len=20, dropout=0.1),
    "FAME N=2, random W_f": lambda n, d: FAME(
        n, hidden_dim=d, num_heads=2, num_experts=2, num_blocks=1, max_len=20, dropout=0.1,
        item_projection_initializer="glorot_uniform",
    ),
}


def train_from_scratch(make, split, seed, epochs, learning_rate):
    """Seeds everything, builds `make()` and fits it on `split` for `epochs` epochs (Adam, batch 128).

    Returns `(model, seconds of fitting)`.
    """
    keras.utils.set_random_seed(seed)
    model = make()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    start = time.time()
    model.fit(
        TrainingBatches(split.train_inputs, split.train_targets, batch_size=128, seed=seed), epochs=epochs, verbose=0
    )
    return model, time.time() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--hidden-dim", type=int, default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", default=None, help="write the table as JSON here")
    args = parser.parse_args()
    rows = []
    for values in (16, 32):
        for seed in args.seeds:
            data, _ = planted_facets(num_users=args.users, num_colours=values, num_shapes=values, seed=seed)
            split = leave_one_out(data, max_len=20)
            row = {"items": data.num_items, "seed": seed}
            for name, make in MODELS.items():
                model, seconds = train_from_scratch(
                    lambda: make(data.num_items, args.hidden_dim), split, seed, args.epochs, 5e-3
                )
                row[name] = round(evaluate_model(model, split.validation, exclude_history=False)["ndcg@10"], 4)
                row[name + " seconds"] = round(seconds, 1)
            rows.append(row)
            print("  ".join(f"{k}={v}" for k, v in row.items() if "seconds" not in k), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "machine": platform.platform(), "rows": rows, "provenance": provenance()}, f,
                      indent=2)


if __name__ == "__main__":
    main()
