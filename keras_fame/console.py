"""The `keras-fame` command: prepare, train, evaluate, recommend, export.

    keras-fame prepare toys --out data/                      # download (or --raw FILE) and prepare
    keras-fame train toys --data-dir data/ --heads 2         # text start -> SASRec -> FAME (as make train)
    keras-fame train custom --sequence-file my.txt           # any S3-Rec file: `user item item ...`
    keras-fame train shop --interactions-csv log.csv         # your log: user,item,timestamp (string ids)
    keras-fame evaluate runs/toys/fame.keras data/toys/Toys_and_Games.txt
    keras-fame recommend runs/toys/fame.keras --history 12 7 301 --history 5 --k 10 --explain
    keras-fame export runs/toys/fame.keras serving/fame      # SavedModel for TF Serving

Each subcommand's `--help` lists its flags. Bad arguments and missing files
exit with status 2 and a message naming what is wrong.
"""

import argparse
import json
import os
import shutil
import sys

import numpy as np

from keras_fame.data.registry import DATASETS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _error(message):
    print(f"keras-fame: error: {message}", file=sys.stderr)
    return 2


def _load(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such model file")
    import keras

    import keras_fame  # noqa: F401  (registers the classes)

    return keras.saving.load_model(path, safe_mode=True)


def _prepare(args):
    from keras_fame.data.prepare import prepare_dataset

    if args.raw and not os.path.isfile(args.raw):
        return _error(f"--raw {args.raw}: no such file")
    path, data = prepare_dataset(args.dataset, args.out, raw=args.raw, meta=args.meta, k=args.k)
    print(f"wrote {path}: {data.stats()}")
    return 0


def _evaluate(args):
    from keras_fame.data import DataFormatError, leave_one_out, read_sequences
    from keras_fame.evaluation import evaluate_test_set

    if not os.path.isfile(args.sequence_file):
        return _error(f"{args.sequence_file}: no such sequence file")
    model = _load(args.model)
    try:
        data = read_sequences(args.sequence_file)
    except DataFormatError as error:
        return _error(str(error))
    if data.num_items > model.num_items:
        return _error(f"{args.sequence_file} has item ids up to {data.num_items}; the model knows {model.num_items}")
    split = leave_one_out(data, max_len=model.max_len)
    print(json.dumps({"model": args.model, "test": evaluate_test_set(model, split)}, indent=2))
    return 0


def _item_ids_file(args):
    """The id mapping to use: --item-ids, else `item_ids.json` beside the model (written by --interactions-csv)."""
    if args.item_ids:
        return args.item_ids
    beside = os.path.join(os.path.dirname(os.path.abspath(args.model)), "item_ids.json")
    return beside if os.path.isfile(beside) else None


def _recommend(args):
    if not args.history:
        return _error("give at least one --history ITEM [ITEM ...]")
    mapping = _item_ids_file(args)
    if mapping is not None:
        from keras_fame.data.preprocess import load_item_ids

        if not os.path.isfile(mapping):
            return _error(f"--item-ids {mapping}: no such file")
        to_original, to_internal = load_item_ids(mapping)
        unknown = [item for h in args.history for item in h if item not in to_internal]
        if unknown:
            return _error(f"item {unknown[0]!r} is not in {mapping} (the model knows only the items it was trained on)")
        histories = [[to_internal[item] for item in h] for h in args.history]
    else:
        try:
            histories = [[int(item) for item in h] for h in args.history]
        except ValueError as error:
            return _error(f"--history takes integer item ids without an --item-ids mapping ({error})")
    model = _load(args.model)
    try:
        out = model.recommend(histories, k=args.k, explain=args.explain)
    except ValueError as error:
        return _error(str(error))
    answer = {key: value.tolist() for key, value in out.items()}
    if mapping is not None:  # answer in the user's own ids
        for key in ("item_ids", "head_item_ids"):
            if key in answer:
                answer[key] = np.vectorize(to_original.get, otypes=[object])(np.asarray(out[key])).tolist()
    print(json.dumps(answer, indent=2))
    return 0


def _export(args):
    from keras_fame.export.__main__ import main as export_main

    argv = [args.model, args.base_dir, "--k", str(args.k)]
    if args.version is not None:
        argv += ["--version", str(args.version)]
    argv += ["--keep-seen"] * args.keep_seen + ["--no-explain"] * args.no_explain
    mapping = _item_ids_file(args)
    if mapping is not None:
        argv += ["--item-ids", mapping]  # the string-id signatures
    before = set(os.listdir(args.base_dir)) if os.path.isdir(args.base_dir) else set()
    code = export_main(argv)
    if code == 0 and mapping is not None:
        # The mapping is inside the graph (serving_strings); a copy travels in assets.extra/ for reference
        # (TF Serving ignores that folder).
        (version,) = set(os.listdir(args.base_dir)) - before
        extra = os.path.join(args.base_dir, version, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        shutil.copyfile(mapping, os.path.join(extra, "item_ids.json"))
    return code


def main(argv=None):
    from_command_line = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="keras-fame", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    prepare = commands.add_parser("prepare", help="download (or take local raw files) and prepare a dataset")
    prepare.add_argument("dataset", choices=sorted(DATASETS))
    prepare.add_argument("--out", default="data", help="output folder (default: data)")
    prepare.add_argument("--raw", help="local review file (Amazon) or ratings.csv / ml-20m.zip (MovieLens)")
    prepare.add_argument("--meta", help="local Amazon metadata file")
    prepare.add_argument("--k", type=int, default=5, help="k-core threshold (default: 5)")

    commands.add_parser(
        "train", add_help=False,
        help="text start -> SASRec -> FAME on a dataset (toys, beauty, sports, or any name with --sequence-file)",
    )

    evaluate = commands.add_parser("evaluate", help="test metrics (leave-one-out, full ranking) of a saved model")
    evaluate.add_argument("model", help="a SASRec/FAME .keras file")
    evaluate.add_argument("sequence_file", help="the S3-Rec file the model was trained on")

    recommend = commands.add_parser("recommend", help="top-k items for given histories")
    recommend.add_argument("model", help="a SASRec/FAME .keras file")
    recommend.add_argument("--history", nargs="+", action="append", metavar="ITEM",
                           help="one history, oldest item first; repeat for more users")
    recommend.add_argument("--item-ids", metavar="FILE",
                           help="id mapping (default: item_ids.json beside the model, if any): histories and "
                           "answers in your own item ids")
    recommend.add_argument("--k", type=int, default=10)
    recommend.add_argument("--explain", action="store_true", help="FAME: also each head's own top-k")

    export = commands.add_parser("export", help="SavedModel for TF Serving, at BASE_DIR/VERSION/")
    export.add_argument("model", help="a SASRec/FAME .keras file")
    export.add_argument("base_dir")
    export.add_argument("--k", type=int, default=20)
    export.add_argument("--version", type=int)
    export.add_argument("--keep-seen", action="store_true", help="do not exclude the input items from the top-k")
    export.add_argument("--no-explain", action="store_true", help="FAME: omit the per-head 'explain' signature")
    export.add_argument("--item-ids", metavar="FILE",
                        help="id mapping: adds the serving_strings signatures (your ids in and out) and is copied to VERSION/assets.extra/item_ids.json (default: item_ids.json "
                        "beside the model, if any)")

    if argv[:1] == ["train"]:  # the training flags are the pipeline's own (`keras-fame train toys --help`)
        from keras_fame.experiments import cli

        if len(argv) < 2 or argv[1].startswith("-"):
            return _error("usage: keras-fame train DATASET [flags]; DATASET is toys, beauty, sports, or a name "
                          "for your own --sequence-file (see keras-fame train toys --help)")
        dataset, rest = argv[1], argv[2:]
        if dataset not in cli.DATASET_FILES and not {"--sequence-file", "--interactions-csv"} & set(rest):
            return _error(f"unknown dataset {dataset!r}: use toys, beauty or sports, or pass --sequence-file FILE "
                          "or --interactions-csv FILE")
        return cli.main(dataset, rest, reexec=from_command_line)

    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return {"prepare": _prepare, "evaluate": _evaluate, "recommend": _recommend, "export": _export}[args.command](args)
    except (FileNotFoundError, ValueError) as error:  # ValueError includes DataFormatError (bad files)
        return _error(str(error))


if __name__ == "__main__":
    sys.exit(main())
