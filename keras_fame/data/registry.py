"""The one registry of the paper's datasets: file names and download URLs.

Everything that needs a dataset's files (the experiment harness, `keras-fame
prepare`, `keras_fame.data.download`, the TFDS builder) reads them from here.
It sits in the library, not in the harness (`keras_fame.experiments`), because
the library's own TFDS builders and `prepare_dataset` need it.
"""

import dataclasses
import os

AMAZON_2014 = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles"


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One dataset: `key` (as on the command line), `name` (the file stem) and its raw sources."""

    key: str
    name: str
    sources: dict
    has_item_text: bool = True

    @property
    def sequence_file(self):
        """The prepared S3-Rec file, `<name>.txt`, kept under `<data dir>/<key>/`."""
        return f"{self.name}.txt"

    @property
    def item_text_file(self):
        """The item text beside it (`<name>_item_text.jsonl`), or None."""
        return f"{self.name}_item_text.jsonl" if self.has_item_text else None


def _amazon(key, name):
    return Dataset(key, name, {
        "reviews": f"{AMAZON_2014}/reviews_{name}_5.json.gz",
        "metadata": f"{AMAZON_2014}/meta_{name}.json.gz",
    })


DATASETS = {
    "beauty": _amazon("beauty", "Beauty"),
    "sports": _amazon("sports", "Sports_and_Outdoors"),
    "toys": _amazon("toys", "Toys_and_Games"),
    "ml-20m": Dataset("ml-20m", "ml-20m", {"archive": "https://files.grouplens.org/datasets/movielens/ml-20m.zip"},
                      has_item_text=False),
}

# `(folder, file)` of each dataset's S3-Rec file and the name of its item text.
DATASET_FILES = {key: (key, d.sequence_file) for key, d in DATASETS.items()}
ITEM_TEXT_FILES = {key: d.item_text_file for key, d in DATASETS.items() if d.item_text_file}


def find_sequence_file(dataset, data_dir=None, fall_back=True):
    """Locates `<data_dir>/<dataset>/<File>.txt` (or `<data_dir>/<File>.txt`).

    Looks in `data_dir`, then (with `fall_back`, the default) `$FAME_DATA_DIR`
    and `../shared/data` beside the checkout. `fall_back=False` looks in
    `data_dir` alone (an explicit folder that lacks the file is then not
    replaced by another one). Returns the path or None.
    """
    folder, name = DATASET_FILES[dataset]
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    candidates = [data_dir]
    if fall_back:
        candidates += [os.environ.get("FAME_DATA_DIR"), os.path.join(checkout, "..", "shared", "data")]
    for root in filter(None, candidates):
        for path in (os.path.join(root, folder, name), os.path.join(root, name)):
            if os.path.isfile(path):
                return os.path.normpath(path)
    return None
