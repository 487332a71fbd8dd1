"""FAME in a few dozen lines of the public API: data, SASRec, the transplant, FAME, ranking, export.

    python examples/quickstart.py                       # small synthetic data, about a minute on a CPU
    python examples/quickstart.py --sequence-file ../shared/data/toys/Toys_and_Games.txt --epochs 30

This script is the library as a user meets it; `examples/train_toys.py` runs
the paper's whole staged pipeline (text start, resume, reports) through the
experiment harness (`keras_fame.experiments`).
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_fame  # noqa: E402  (first: it quiets TensorFlow's start-up lines)
import keras  # noqa: E402, I001
from keras_fame.data import TrainingBatches, leave_one_out, read_sequences  # noqa: E402
from keras_fame.data.synthetic import planted_facets  # noqa: E402
from keras_fame.evaluation import FullRankingEvaluation, evaluate_model  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequence-file", help="an S3-Rec file (user item item ...); default: synthetic data")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--export-dir", help="write a SavedModel here (TensorFlow backend)")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)

    # 1. Data: one line per user, items oldest first. Leave-one-out: the last item is the test
    #    target, the second-last the validation target, the rest trains (every prefix -> next item).
    if args.sequence_file:
        data = read_sequences(args.sequence_file)
    else:
        data, _ = planted_facets(num_users=600, seed=0)  # each user follows a colour or a shape
    split = leave_one_out(data, max_len=20)
    batches = TrainingBatches(split.train_inputs, split.train_targets, batch_size=128, seed=0)
    print(f"{data.num_users} users, {data.num_items} items")

    def fit(model):
        model.compile()  # Adam(1e-3), softmax cross-entropy over every item at every position
        model.fit(
            batches,
            epochs=args.epochs,
            callbacks=[
                FullRankingEvaluation(split.validation, verbose=0),  # val_ndcg@10 etc. into the logs
                keras.callbacks.EarlyStopping("val_ndcg@10", mode="max", patience=3, restore_best_weights=True),
            ],
            verbose=0,
        )

    # 2. SASRec, then FAME transplanted from it (the paper's §4.4.2): the item table and the first
    #    blocks are copied, the last block becomes per-head query experts with a router, and a gate
    #    over the facet heads scores the items.
    sasrec = keras_fame.SASRec(data.num_items, hidden_dim=32, num_heads=2, max_len=20, dropout=0.3)
    fit(sasrec)
    fame = keras_fame.FAME.from_sasrec(sasrec, num_heads=2, num_experts=4, dropout=0.3)
    fit(fame)

    # 3. Full-ranking test metrics (every item is a candidate; the user's history is left out).
    for name, model in (("SASRec", sasrec), ("FAME", fame)):
        metrics = evaluate_model(model, split.test, exclude_history=True)
        print(f"{name:7s} test NDCG@10 {metrics['ndcg@10']:.4f}  HR@10 {metrics['hr@10']:.4f}")

    # 4. Recommendations for raw histories, with FAME's explanation: the gate over the heads and
    #    each head's own top-k. `fame.ranker()` is the same computation as a Keras model.
    out = fame.recommend([[3, 5, 7], [11, 12]], k=5, explain=True)
    print("top-5:", out["item_ids"].tolist())
    print("gate over heads:", [[round(float(w), 3) for w in row] for row in out["head_weights"]])
    print("head 0's top-5:", out["head_item_ids"][:, 0].tolist())

    # 5. Save, load, and export for TF Serving (signature `serving_default`: item_ids -> top-k).
    folder = tempfile.mkdtemp(prefix="fame-quickstart-")
    fame.save(os.path.join(folder, "fame.keras"))
    again = keras.saving.load_model(os.path.join(folder, "fame.keras"), safe_mode=True)
    assert (again.recommend([[3, 5, 7]], k=5)["item_ids"] == out["item_ids"][:1]).all()
    if args.export_dir and keras.backend.backend() == "tensorflow":
        print("exported to", keras_fame.export_saved_model(fame, args.export_dir, k=10))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
