"""FAME with and without item facets as inputs, on data whose next item follows a facet label.

    python benchmarks/planted_facet_inputs.py [--seeds 0 1 2] [--out results/planted_facet_inputs.json]

`keras_fame.data.synthetic.planted_facet_walks`: each user follows one of two
facets (named by the marker item that opens the sequence), whose value steps
+1 per interaction. The item facets given to the model are exactly those
attributes (label = value + 1, markers unlabelled). Same size for every model
(d = 16, 2 heads, N = 2, one block), trained from scratch for a fixed number
of epochs; held-out NDCG@10 (all_items, mean of validation and test). For
each FAME the table gives the mean gate per planted facet: with facets in
slice `k` and the auxiliary loss, head `k` is facet `k`'s head, so a gate that
routes puts facet-`k` users on head `k`.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_fame import FAME  # noqa: E402
from keras_fame.data import TrainingBatches, leave_one_out  # noqa: E402
from keras_fame.data.synthetic import planted_facet_walks  # noqa: E402
from keras_fame.evaluation import evaluate_model  # noqa: E402
from keras_fame.experiments.reporting import provenance, write_json_atomic  # noqa: E402
from keras_fame.losses import MaskedSoftmaxCrossEntropy  # noqa: E402
from keras_fame.training import AllPositionsTrainer  # noqa: E402


def planted_item_facets(facts):
    """The planted attributes as `item_facets=` input: label = value + 1, 0 for padding and markers."""
    attributes = facts["item_attributes"]
    return [(attributes[:, k] + 1).astype("int32") for k in range(attributes.shape[1])]


VARIANTS = {
    "FAME": {},
    "FAME + facets": {"facets": True},
    "FAME + facets + aux 0.5": {"facets": True, "weight": 0.5},
}


def train(variant, data, facts, split, seed, epochs=40, learning_rate=3e-3, hidden_dim=16):
    """Builds and fits one variant of `VARIANTS`; returns the model."""
    keras.utils.set_random_seed(seed)
    extra = {"item_facets": planted_item_facets(facts)} if variant.get("facets") else {}
    model = FAME(data.num_items, hidden_dim=hidden_dim, num_heads=2, num_experts=2, num_blocks=1, max_len=20,
                 dropout=0.1, **extra)
    trained = AllPositionsTrainer(model, facet_loss_weight=variant.get("weight", 0.0)) if extra else model
    trained.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=MaskedSoftmaxCrossEntropy())
    trained.fit(TrainingBatches(split.train_inputs, split.train_targets, batch_size=128, seed=seed), epochs=epochs,
                verbose=0)
    return model


def gate_by_facet(model, split, facts):
    """Mean gate weights `[facet][head]` of the validation users of each planted facet."""
    gates = model.scorer().predict(split.validation.inputs, verbose=0)["head_weights"]
    return [[round(float(g), 3) for g in gates[facts["user_facet"] == f].mean(axis=0)] for f in range(2)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=None, help="write the table as JSON here")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        data, facts = planted_facet_walks(num_users=args.users, num_facets=2, num_values=16, seed=seed)
        split = leave_one_out(data, max_len=20)
        row = {"seed": seed}
        for name, variant in VARIANTS.items():
            model = train(variant, data, facts, split, seed, epochs=args.epochs)
            held_out = [evaluate_model(model, r, exclude_history=False)["ndcg@10"] for r in (split.validation, split.test)]
            row[name] = round(float(np.mean(held_out)), 4)
            row[name + " gate by facet"] = gate_by_facet(model, split, facts)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        write_json_atomic(args.out, {"provenance": provenance(), "args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
