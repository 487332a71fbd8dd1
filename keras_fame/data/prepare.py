"""Download (or take local raw files) and prepare the paper's datasets in the S3-Rec format."""

import os

from keras_fame.data import download, preprocess

from keras_fame.data.registry import DATASETS

NAMES = {key: dataset.name for key, dataset in DATASETS.items()}


def prepare_dataset(dataset, out="data", raw=None, meta=None, k=5):
    """Writes `<out>/<dataset>/<Name>.txt` (and the item files) for one of `NAMES`.

    Raw downloads are kept in `<out>/raw/` and not fetched again; with `raw`
    (and `meta`) local files are used and nothing is downloaded.

    Returns:
        `(path of the sequence file, SequenceData)`.
    """
    if dataset not in NAMES:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {sorted(NAMES)}")
    name = NAMES[dataset]
    folder = os.path.join(out, dataset)
    raw_dir = os.path.join(out, "raw")
    sources = download.SOURCES[dataset]
    if dataset == "ml-20m":
        raw = raw or download.fetch(sources["archive"], os.path.join(raw_dir, "ml-20m.zip"))
        if raw.endswith(".zip"):
            raw = download.extract_movielens_ratings(raw, os.path.join(raw_dir, "ml-20m-ratings.csv"))
        data = preprocess.prepare_movielens(raw, folder, name=name, k=k)
    else:
        reviews = raw or download.fetch(sources["reviews"], os.path.join(raw_dir, os.path.basename(sources["reviews"])))
        meta = meta or (
            None if raw else download.fetch(sources["metadata"], os.path.join(raw_dir, os.path.basename(sources["metadata"])))
        )
        data = preprocess.prepare_amazon(reviews, folder, name, metadata_path=meta, k=k)
    return os.path.join(folder, name + ".txt"), data
