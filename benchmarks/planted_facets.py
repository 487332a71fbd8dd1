"""SASRec vs FAME trained from scratch on planted-facet synthetic data (validation NDCG@10, all_items).

    python benchmarks/planted_facets.py
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

from keras_fame import FAME, SASRec  # noqa: E402
from keras_fame.data import TrainingBatches, leave_one_out  # noqa: E402
from keras_fame.data.synthetic import planted_facets  # noqa: E402
from keras_fame.evaluation import evaluate_model  # noqa: E402

data, _ = planted_facets(num_users=1500, num_colours=16, num_shapes=16, seed=0)
split = leave_one_out(data, max_len=16)


def train(model, epochs, lr=5e-3):
    model.compile(optimizer=keras.optimizers.Adam(lr))
    model.fit(TrainingBatches(split.train_inputs, split.train_targets, batch_size=128, seed=0), epochs=epochs, verbose=0)
    return evaluate_model(model, split.validation, exclude_history=False)["ndcg@10"]


for d in (8, 16):
    epochs = 40
    keras.utils.set_random_seed(0)
    s = train(SASRec(data.num_items, hidden_dim=d, num_heads=2, num_blocks=1, max_len=16, dropout=0.1), epochs)
    line = [f"d={d} ep={epochs} SASRec {s:.4f}"]
    for n in (1, 2):
        keras.utils.set_random_seed(0)
        fame = FAME(data.num_items, hidden_dim=d, num_heads=2, num_experts=n, num_blocks=1, max_len=16, dropout=0.1)
        line.append(f"FAME N={n} {train(fame, epochs):.4f}")
    print("  ".join(line), flush=True)
