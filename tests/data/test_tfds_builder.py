"""The TFDS builder, offline, on files the test writes: prepared S3-Rec files and raw Amazon reviews."""

import gzip
import json

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from keras_fame.data import leave_one_out, read_sequences, write_sequences  # noqa: E402
from keras_fame.data.synthetic import planted_facets  # noqa: E402
from keras_fame.data.tfds_builder import SequentialRecommendation, sequences_from_tfds  # noqa: E402


def _same(a, b):
    np.testing.assert_array_equal(a.user_ids, b.user_ids)
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.items, b.items)


def test_tfds_load_from_a_prepared_file_gives_the_same_sequences(tmp_path):
    data, _ = planted_facets(num_users=80, max_length=9, seed=4)
    manual = tmp_path / "manual" / "toys"
    manual.mkdir(parents=True)
    write_sequences(str(manual / "Toys_and_Games.txt"), data)
    ds = tfds.load(
        "sequential_recommendation/toys", split="train", data_dir=str(tmp_path / "tfds"),
        download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(manual_dir=str(tmp_path / "manual"))},
    )
    got = sequences_from_tfds(ds, num_items=data.num_items)
    expected = read_sequences(str(manual / "Toys_and_Games.txt"))
    _same(got, expected)
    assert got.timestamps is None  # an S3-Rec file carries no times
    # From there, the package's own split works as on the file.
    a, b = leave_one_out(got, max_len=9), leave_one_out(expected, max_len=9)
    np.testing.assert_array_equal(a.train_inputs, b.train_inputs)
    np.testing.assert_array_equal(a.test.targets, b.test.targets)


def test_raw_reviews_in_manual_dir_are_prepared_by_the_package(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    rows = []
    for u in range(12):  # 12 users x 6 of 8 items: everyone survives the 5-core
        for t in range(6):
            rows.append({"reviewerID": f"U{u}", "asin": f"A{(u + t) % 8}", "unixReviewTime": 1000 + 10 * t})
    with gzip.open(manual / "reviews_Beauty_5.json.gz", "wt") as f:
        f.write("\n".join(json.dumps(r) for r in rows) + "\n")
    builder = SequentialRecommendation(config="beauty", data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    got = sequences_from_tfds(builder.as_dataset(split="train"))
    assert len(got.user_ids) == 12 and got.num_items == 8
    assert np.all(np.diff(got.indptr) == 6)
    # The raw reviews' times travel with the items, oldest first, per user.
    np.testing.assert_array_equal(got.timestamps, np.tile(1000 + 10 * np.arange(6), 12))


def test_an_empty_manual_dir_names_what_is_missing(tmp_path):
    builder = SequentialRecommendation(config="sports", data_dir=str(tmp_path / "tfds"))
    with pytest.raises(Exception, match="Sports_and_Outdoors.txt"):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path)))
