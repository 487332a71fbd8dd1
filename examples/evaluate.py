"""Evaluate a saved `.keras` SASRec/FAME on a dataset's leave-one-out test set (both protocols).

    python examples/evaluate.py runs/toys/sasrec.keras toys --data-dir ../shared/data
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import keras_fame  # noqa: E402, F401  (registers the layers)
from keras_fame.data.registry import DATASET_FILES, find_sequence_file  # noqa: E402
from keras_fame.data import leave_one_out, read_sequences  # noqa: E402
from keras_fame.experiments import format_comparison
from keras_fame.evaluation import evaluate_test_set  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("dataset", choices=sorted(DATASET_FILES))
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)
    path = find_sequence_file(args.dataset, args.data_dir)
    if path is None:
        print(f"error: {args.dataset} data not found (--data-dir, $FAME_DATA_DIR, ../shared/data)", file=sys.stderr)
        return 2
    model = keras.saving.load_model(args.model, safe_mode=True)
    split = leave_one_out(read_sequences(path), max_len=model.max_len)
    result = evaluate_test_set(model, split)
    print(json.dumps(result, indent=2))
    print(format_comparison(args.dataset, {f"{model.name} ({k})": v for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
