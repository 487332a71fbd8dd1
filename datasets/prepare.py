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

from keras_fame.data import download, preprocess  # noqa: E402

NAMES = {"beauty": "Beauty", "sports": "Sports_and_Outdoors", "toys": "Toys_and_Games", "ml-20m": "ml-20m"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(NAMES))
    parser.add_argument("--out", default="data")
    parser.add_argument("--raw", help="local review file (Amazon) or ratings.csv / ml-20m.zip (MovieLens)")
    parser.add_argument("--meta", help="local Amazon metadata file")
    parser.add_argument("--k", type=int, default=5, help="k-core threshold")
    args = parser.parse_args(argv)

    name = NAMES[args.dataset]
    folder = os.path.join(args.out, args.dataset)
    raw_dir = os.path.join(args.out, "raw")
    sources = download.SOURCES[args.dataset]
    if args.dataset == "ml-20m":
        raw = args.raw or download.fetch(sources["archive"], os.path.join(raw_dir, "ml-20m.zip"))
        if raw.endswith(".zip"):
            raw = download.extract_movielens_ratings(raw, os.path.join(raw_dir, "ml-20m-ratings.csv"))
        data = preprocess.prepare_movielens(raw, folder, name=name, k=args.k)
    else:
        reviews = args.raw or download.fetch(sources["reviews"], os.path.join(raw_dir, os.path.basename(sources["reviews"])))
        meta = args.meta or (
            None if args.raw else download.fetch(sources["metadata"], os.path.join(raw_dir, os.path.basename(sources["metadata"])))
        )
        data = preprocess.prepare_amazon(reviews, folder, name, metadata_path=meta, k=args.k)
    print(f"wrote {os.path.join(folder, name + '.txt')}: {data.stats()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
