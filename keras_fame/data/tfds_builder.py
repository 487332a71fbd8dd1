"""A TFDS builder for the sequential-recommendation datasets, offline from `manual_dir`.

    import tensorflow_datasets as tfds
    import keras_fame.data.tfds_builder  # registers "sequential_recommendation"

    ds = tfds.load(
        "sequential_recommendation/toys", split="train",
        download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(manual_dir="data/")},
    )
    split = leave_one_out(sequences_from_tfds(ds), max_len=50)   # -> TrainingBatches, evaluation, ...

One example per user: `user_id` (int64), `item_ids` (the user's items,
oldest first, int64) and `timestamps` (int64 Unix seconds, one per item,
when the builder prepared the raw downloads, which carry them; empty when it
read a prepared S3-Rec file, which does not). Configurations: `beauty`,
`sports`, `toys` (Amazon 2014 5-core, S3-Rec ids) and `ml-20m`
(MovieLens-20m, 5-core). Everything is in the single split `train`; the
leave-one-out split is made afterwards (`keras_fame.data.leave_one_out`), as
the paper does.

`manual_dir` holds either the prepared S3-Rec file (`Toys_and_Games.txt`,
directly or under `toys/`, as `keras-fame prepare` writes it) or the raw
downloads (`reviews_Toys_and_Games_5.json.gz` and, optionally,
`meta_Toys_and_Games.json.gz`; `ml-20m.zip` or `ratings.csv`), which are then
prepared with the package's own preprocessing (`keras_fame.data.prepare`).
Nothing is downloaded: the builder never touches the network.
"""

import os
import tempfile

import numpy as np
import tensorflow_datasets as tfds

from keras_fame.data.prepare import NAMES, prepare_dataset
from keras_fame.data.registry import DATASETS
from keras_fame.data.sequences import SequenceData, read_sequences


def _raw_files(dataset, folder):
    """`(raw, meta)` paths of the raw downloads in `folder`, or `(None, None)`."""
    if dataset == "ml-20m":
        for name in ("ml-20m.zip", "ratings.csv"):
            if os.path.isfile(os.path.join(folder, name)):
                return os.path.join(folder, name), None
        return None, None
    sources = DATASETS[dataset].sources  # the raw files keep their download names
    reviews = os.path.join(folder, os.path.basename(sources["reviews"]))
    meta = os.path.join(folder, os.path.basename(sources["metadata"]))
    return (reviews if os.path.isfile(reviews) else None), (meta if os.path.isfile(meta) else None)


class SequentialRecommendation(tfds.core.GeneratorBasedBuilder):
    """Users' item sequences of the paper's datasets (S3-Rec format), built from `manual_dir`."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "S3-Rec sequences, one example per user.",
        "1.1.0": "`timestamps` per item (from the raw downloads; empty for prepared S3-Rec files).",
    }
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name=name, description=f"{NAMES[name]}: 5-core, items in time order")
        for name in ("beauty", "sports", "toys", "ml-20m")
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put the prepared S3-Rec file (e.g. Toys_and_Games.txt, from `keras-fame prepare toys`) or the raw "
        "downloads (reviews_<Category>_5.json.gz [+ meta_<Category>.json.gz], or ml-20m.zip / ratings.csv) "
        "in manual_dir."
    )

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "user_id": np.int64,
                "item_ids": tfds.features.Sequence(np.int64),
                "timestamps": tfds.features.Sequence(np.int64),
            }),
            homepage="https://github.com/RUCAIBox/CIKM2020-S3Rec",
        )

    def _split_generators(self, dl_manager):
        dataset = self.builder_config.name
        manual = os.fspath(dl_manager.manual_dir)
        name = f"{NAMES[dataset]}.txt"
        for path in (os.path.join(manual, name), os.path.join(manual, dataset, name)):
            if os.path.isfile(path):
                return {"train": self._generate_examples(read_sequences(path))}
        raw, meta = _raw_files(dataset, manual)
        if raw is None:
            raise FileNotFoundError(
                f"{manual}: neither {name} (directly or under {dataset}/) nor the raw downloads were found. "
                + self.MANUAL_DOWNLOAD_INSTRUCTIONS
            )
        prepared = tempfile.mkdtemp(prefix=f"keras-fame-{dataset}-")
        _, data = prepare_dataset(dataset, prepared, raw=raw, meta=meta)  # keeps the events' times
        return {"train": self._generate_examples(data)}

    def _generate_examples(self, data):
        no_times = np.zeros(0, np.int64)
        for row, user in enumerate(data.user_ids.tolist()):
            lo, hi = data.indptr[row], data.indptr[row + 1]
            times = no_times if data.timestamps is None else np.asarray(data.timestamps[lo:hi]).astype(np.int64)
            yield user, {"user_id": user, "item_ids": data.items[lo:hi].astype(np.int64), "timestamps": times}


def sequences_from_tfds(dataset, num_items=None):
    """A TFDS split of `SequentialRecommendation` (a `tf.data.Dataset`) -> `SequenceData`.

    Users are ordered by `user_id` (TFDS shuffles files on read); `num_items`
    defaults to the largest item id present. `timestamps` are kept when every
    example has one per item (datasets built from the raw downloads).
    """
    users, sequences, times = [], [], []
    for example in tfds.as_numpy(dataset):
        users.append(int(example["user_id"]))
        sequences.append(np.asarray(example["item_ids"], np.int32))
        times.append(np.asarray(example.get("timestamps", np.zeros(0)), np.int64))
    if not users:
        raise ValueError("the dataset holds no users")
    order = np.argsort(users, kind="stable")
    lengths = np.array([len(sequences[i]) for i in order], np.int64)
    items = np.concatenate([sequences[i] for i in order]).astype(np.int32)
    timed = all(len(times[i]) == len(sequences[i]) for i in order)
    return SequenceData(
        user_ids=np.asarray(users, np.int64)[order],
        indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        items=items,
        num_items=int(num_items or items.max()),
        source="<tfds:sequential_recommendation>",
        timestamps=np.concatenate([times[i] for i in order]) if timed else None,
    )
