"""Add new items to a trained FAME+/SASRec from their text alone, and export the grown model.

    python examples/add_items.py runs/toys/fame.keras runs/toys/pretrainer.keras new_items.jsonl \
        --out runs/toys/fame_grown.keras --export /srv/models/fame

`new_items.jsonl`: one JSON object per new item, with `title` or
`idgenrec_text` (or `text`) and optionally `brand` and `categories` (a
list, top level first). The items get ids `num_items + 1, ...` in file
order. The model should have been trained with `--text-pretrain
--text-frozen` (frozen text table + ID offset), so that trained items and
new ones are scored the same way; `train_*.py` saves `pretrainer.keras`
beside the model. Each new item's ID offset is borrowed from its 10
text-nearest trained items (`--offsets zero`: offset 0, text alone).
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import keras_fame  # noqa: E402
from keras_fame.data.item_text import item_text_string  # noqa: E402
from keras_fame.pretraining import add_items_from_text  # noqa: E402


def read_new_items(path):
    texts = []
    with open(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise SystemExit(f"error: {path}:{line_no}: not valid JSON ({err})")
            title = next((row[k] for k in ("title", "idgenrec_text", "text") if row.get(k)), "")
            text = item_text_string(title, row.get("brand"), row.get("categories") or [])
            if not text:
                raise SystemExit(f"error: {path}:{line_no}: no title, phrase, text, brand or categories")
            texts.append(text)
    if not texts:
        raise SystemExit(f"error: {path}: no items")
    return texts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("pretrainer")
    parser.add_argument("items")
    parser.add_argument("--out", required=True, help="the grown .keras file")
    parser.add_argument("--export", help="also export a SavedModel version to this TF Serving base folder")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--offsets", choices=("zero", "neighbours"), default="neighbours",
                        help="new items' ID offsets: borrowed from their text-nearest trained items (default; "
                        "`model.impute_offsets`: on Toys it put 9x more cold targets in the top 10, results/LOG.md "
                        "session 11) or 0 (scored from text alone)")
    parser.add_argument("--neighbours", type=int, default=10, help="k for --offsets neighbours")
    args = parser.parse_args(argv)
    for path in (args.model, args.pretrainer, args.items):
        if not os.path.isfile(path):
            parser.error(f"{path}: no such file")
    model = keras.saving.load_model(args.model, safe_mode=True)
    pretrainer = keras.saving.load_model(args.pretrainer, safe_mode=True)
    texts = read_new_items(args.items)
    offsets = None if args.offsets == "zero" else "neighbours"
    grown = add_items_from_text(model, pretrainer, texts, offsets=offsets, neighbours=args.neighbours)
    grown.save(args.out)
    print(f"{len(texts)} items added as ids {model.num_items + 1}..{grown.num_items}: {args.out}")
    if args.export:
        print(keras_fame.export_saved_model(grown, args.export, k=args.k))
    return 0


if __name__ == "__main__":
    sys.exit(main())
