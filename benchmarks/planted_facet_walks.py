"""SASRec vs FAME from scratch on `planted_facet_walks`: where FAME's gate is needed.

    python benchmarks/planted_facet_walks.py [--seeds 0 1 2 3] [--out results/planted_facet_walks.json]

Each user's next item depends on one facet, named by the marker item that
opens the sequence (`keras_fame.data.synthetic.planted_facet_walks`). Models
of the same size (d = 16, 2 heads, one block) train for a fixed number of
epochs; the table gives held-out NDCG@10 (all_items, mean of validation and
test, neither used in training), how strongly FAME's gate sends each
facet's users to one head, and, for reference, a rule that knows the
generator (the marker's facet, the last item's value + 1; it ignores jumps
and noise, so a model can match or slightly pass it).
"""

import argparse
import json
import os
import platform
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_fame import FAME, SASRec  # noqa: E402
from keras_fame.data import leave_one_out  # noqa: E402
from keras_fame.data.synthetic import planted_facet_walks  # noqa: E402
from keras_fame.evaluation import evaluate_model  # noqa: E402
from keras_fame.experiments import provenance  # noqa: E402
from planted_facets import train_from_scratch  # noqa: E402  (the sibling benchmark, same folder)


def make_models(num_items, d, heads):
    size = dict(hidden_dim=d, num_heads=heads, num_blocks=1, max_len=20, dropout=0.1)
    return {
        "SASRec": lambda: SASRec(num_items, **size),
        "FAME N=1": lambda: FAME(num_items, num_experts=1, **size),
        "FAME N=2": lambda: FAME(num_items, num_experts=2, **size),
        "FAME N=4": lambda: FAME(num_items, num_experts=4, **size),
        "FAME N=2, random W_f": lambda: FAME(
            num_items, num_experts=2, item_projection_initializer="glorot_uniform", **size
        ),
    }


def rule_ndcg(rows, facts, num_values, k=10):
    """Expected NDCG@k of ranking first, in random order, the items whose
    followed attribute is the last item's value + 1 (everything else after)."""
    attributes = facts["item_attributes"]
    facet = rows.inputs[np.arange(len(rows)), (rows.inputs > 0).argmax(axis=1)] - 1  # the marker
    last = attributes[rows.inputs[:, -1], facet]
    wanted = (last + 1) % num_values
    hit = (attributes[rows.targets, facet] == wanted) & (last >= 0)
    set_size = num_values ** (facts["num_facets"] - 1)
    gain = (1.0 / np.log2(np.arange(2, min(k, set_size) + 2))).sum() / set_size
    return float(hit.mean() * gain)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--values", type=int, default=16, help="values per facet")
    parser.add_argument("--hidden-dim", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--out", default=None, help="write the table as JSON here")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        data, facts = planted_facet_walks(num_users=args.users, num_facets=2, num_values=args.values, seed=seed)
        split = leave_one_out(data, max_len=20)
        held_out = (split.validation, split.test)
        rule = np.mean([rule_ndcg(rows_, facts, args.values) for rows_ in held_out])
        row = {"seed": seed, "items": data.num_items, "rule": round(float(rule), 4)}
        for name, make in make_models(data.num_items, args.hidden_dim, 2).items():
            model, seconds = train_from_scratch(make, split, seed, args.epochs, args.lr)
            ndcg = [evaluate_model(model, r, exclude_history=False)["ndcg@10"] for r in held_out]
            row[name] = round(float(np.mean(ndcg)), 4)
            row[name + " seconds"] = round(seconds, 1)
            if isinstance(model, FAME):
                gates = model.scorer().predict(split.validation.inputs, verbose=0)["head_weights"]
                row[name + " gate by facet"] = [
                    [round(float(g), 3) for g in gates[facts["user_facet"] == f].mean(axis=0)] for f in range(2)
                ]
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if "seconds" not in k}), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "machine": platform.platform(), "cpu_count": os.cpu_count(),
                       "backend": keras.backend.backend(), "rows": rows, "provenance": provenance()}, f, indent=2)


if __name__ == "__main__":
    main()
