"""python -m keras_fame.export MODEL.keras BASE_DIR [--k 20] [--version N] [--keep-seen] [--no-explain] [--chunk-size C] [--item-ids FILE]"""

import argparse
import os
import subprocess
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m keras_fame.export", description=__doc__)
    parser.add_argument("model", help="a SASRec/FAME .keras file")
    parser.add_argument("base_dir", help="TF Serving model base folder; the export goes to BASE_DIR/VERSION/")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--version", type=int, default=None, help="default: next free integer")
    parser.add_argument("--keep-seen", action="store_true", help="do not exclude the input items from the top-k")
    parser.add_argument("--no-explain", action="store_true", help="FAME: omit the per-head 'explain' signature")
    parser.add_argument(
        "--chunk-size", type=int, default=None,
        help="score the items this many at a time with a running top-k (large catalogs; default: all at once)",
    )
    parser.add_argument(
        "--item-ids", metavar="FILE",
        help="an item_ids.json mapping (internal id -> your id): adds the serving_strings/explain_strings signatures, "
        "which take and return your string ids",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras

    if keras.backend.backend() != "tensorflow":
        # `python -m keras_fame.export` imports the package (and so keras) before this
        # runs, with whatever KERAS_BACKEND the user has (e.g. jax): run again under
        # TensorFlow, the backend the SavedModel export needs.
        command = [sys.executable, "-m", "keras_fame.export", *(sys.argv[1:] if argv is None else argv)]
        return subprocess.call(command, env=dict(os.environ, KERAS_BACKEND="tensorflow"))

    import keras_fame  # noqa: F401  (registers the classes)
    from keras_fame.export import export_saved_model

    if not os.path.isfile(args.model):
        print(f"error: {args.model}: no such file", file=sys.stderr)
        return 2
    model = keras.saving.load_model(args.model, safe_mode=True)
    try:
        mapping = None
        if args.item_ids is not None:
            from keras_fame.data.preprocess import load_item_ids

            if not os.path.isfile(args.item_ids):
                raise FileNotFoundError(f"--item-ids {args.item_ids}: no such file")
            mapping, _ = load_item_ids(args.item_ids)
        path = export_saved_model(
            model, args.base_dir, k=args.k, version=args.version, exclude_seen=not args.keep_seen,
            explain=not args.no_explain, chunk_size=args.chunk_size, item_ids=mapping,
        )
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
