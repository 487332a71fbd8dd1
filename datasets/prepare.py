"""Download and prepare the paper's datasets in the S3-Rec format.

    python datasets/prepare.py toys   --out data/     # Amazon 2014 Toys_and_Games (5-core + metadata)
    python datasets/prepare.py beauty --out data/
    python datasets/prepare.py sports --out data/
    python datasets/prepare.py ml-20m --out data/     # MovieLens-20m ratings.csv -> 5-core sequences

Raw files are kept in `<out>/raw/` and not downloaded again. Pass `--raw FILE` (and `--meta FILE`)
to prepare files you already have, with no network at all.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_fame.data.prepare import NAMES, prepare_dataset  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(NAMES))
    parser.add_argument("--out", default="data")
    parser.add_argument("--raw", help="local review file (Amazon) or ratings.csv / ml-20m.zip (MovieLens)")
    parser.add_argument("--meta", help="local Amazon metadata file")
    parser.add_argument("--k", type=int, default=5, help="k-core threshold")
    args = parser.parse_args(argv)
    path, data = prepare_dataset(args.dataset, args.out, raw=args.raw, meta=args.meta, k=args.k)
    print(f"wrote {path}: {data.stats()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
