"""Train and evaluate SASRec -> FAME on Amazon Beauty and print the numbers beside the paper's.

    python examples/train_beauty.py --data-dir ../shared/data --heads 2 --experts 4
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_fame.experiments.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("beauty"))
