"""Seconds per training epoch over all Toys training sequences, and one full-ranking validation pass.

    KERAS_BACKEND=tensorflow python benchmarks/epoch_time.py sasrec
    KERAS_BACKEND=jax        python benchmarks/epoch_time.py fame --heads 2 --experts 4

Epoch 1 includes compilation; epoch 2 is the steady-state number to report.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras_fame as kf  # noqa: E402
from keras_fame.data.registry import find_sequence_file  # noqa: E402
from keras_fame.data import TrainingBatches  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("model", choices=["sasrec", "fame"])
parser.add_argument("--heads", type=int, default=2)
parser.add_argument("--experts", type=int, default=4)
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--data-dir")
parser.add_argument("--no-bucketing", action="store_true", help="every batch at full width max_len")
args = parser.parse_args()

data = kf.read_sequences(find_sequence_file("toys", args.data_dir))
split = kf.leave_one_out(data, 50)
print("train rows", split.train_inputs.shape, "positions", split.num_train_positions)
if args.model == "sasrec":
    model = kf.SASRec(data.num_items, hidden_dim=64)
else:
    model = kf.FAME(data.num_items, hidden_dim=64, heads=args.heads, experts=args.experts)
model.compile()
batches = TrainingBatches(split.train_inputs, split.train_targets, 256, buckets=(50,) if args.no_bucketing else None)
print("batches", len(batches), "cells", batches.padded_cells, "vs", split.train_inputs.size)
for epoch in range(args.epochs):
    start = time.time()
    model.fit(batches, epochs=1, verbose=0)
    print("epoch", epoch + 1, f"{time.time() - start:.2f}s")
start = time.time()
print(kf.evaluate_model(model, split.validation))
print(f"eval {time.time() - start:.2f}s")
