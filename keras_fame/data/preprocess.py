"""Raw interaction logs -> S3-Rec sequences: the paper's four datasets.

- Amazon 2014 (Beauty, Sports_and_Outdoors, Toys_and_Games): the 5-core
  review file (`reviews_<Category>_5.json.gz`, one strict JSON object per
  line with `reviewerID`, `asin`, `unixReviewTime`) and the metadata file
  (`meta_<Category>.json.gz`, one Python-literal dict per line with `asin`,
  `brand`, `categories`) -> sequences and item attributes (brand + category
  path), as S3-Rec prepares them.
- MovieLens-20m `ratings.csv` (`userId,movieId,rating,timestamp`) ->
  5-core sequences.

Conventions (S3-Rec's): k-core filtering repeated until stable; each user's
items sorted by time (stable, so ties keep file order); users numbered in
order of first appearance in the log, items in order of first appearance
when the sorted sequences are read user by user; ids start at 1. Everything
after parsing is numpy over whole arrays.
"""

import ast
import gzip
import json
import os

import numpy as np

from keras_fame.data.sequences import DataFormatError, SequenceData


def _open_text(path):
    path = os.fspath(path)
    return gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")


def k_core(users, items, k=5):
    """Boolean mask of the events kept by iterative k-core filtering."""
    keep = np.ones(len(users), dtype=bool)
    while True:
        u_count = np.bincount(users[keep], minlength=users.max() + 1 if len(users) else 0)
        i_count = np.bincount(items[keep], minlength=items.max() + 1 if len(items) else 0)
        new_keep = keep & (u_count[users] >= k) & (i_count[items] >= k)
        if new_keep.sum() == keep.sum():
            return new_keep
        keep = new_keep


def build_sequences(user_keys, item_keys, timestamps, k=5, source="<memory>"):
    """Events -> `SequenceData` with S3-Rec's k-core, ordering and id scheme.

    Args:
        user_keys, item_keys: arrays of raw ids (any dtype), one per event.
        timestamps: numeric array, one per event.
        k: k-core threshold (0 or 1 disables filtering).

    Returns:
        `(SequenceData, user_vocab, item_vocab)`; the vocabularies map new id
        `i` (1-based) to the raw key at index `i - 1`. The data keeps each
        event's time (`SequenceData.timestamps`).
    """
    user_keys = np.asarray(user_keys)
    item_keys = np.asarray(item_keys)
    timestamps = np.asarray(timestamps)
    if len(user_keys) == 0:
        raise DataFormatError(source, None, "no interactions")
    # Dense codes, users by first appearance in the log.
    u_vocab, u_first, u_code = np.unique(user_keys, return_index=True, return_inverse=True)
    i_vocab, i_code = np.unique(item_keys, return_inverse=True)
    if k > 1:
        keep = k_core(u_code, i_code, k)
    else:
        keep = np.ones(len(u_code), dtype=bool)
    if not keep.any():
        raise DataFormatError(source, None, f"no interactions survive {k}-core filtering")
    event = np.flatnonzero(keep)
    u_rank = np.argsort(np.argsort(u_first, kind="stable"), kind="stable")  # appearance order of users
    order = np.lexsort((event, timestamps[event], u_rank[u_code[event]]))
    event = event[order]
    users_sorted = u_rank[u_code[event]]
    items_sorted = i_code[event]
    # Items numbered by first appearance in the sorted stream.
    first_pos = np.full(len(i_vocab), np.iinfo(np.int64).max)
    np.minimum.at(first_pos, items_sorted, np.arange(len(items_sorted)))
    used = np.flatnonzero(first_pos != np.iinfo(np.int64).max)
    used = used[np.argsort(first_pos[used], kind="stable")]
    new_item_id = np.zeros(len(i_vocab), dtype=np.int64)
    new_item_id[used] = np.arange(1, len(used) + 1)
    # Users renumbered 1..U in appearance order among the survivors.
    kept_users, counts = np.unique(users_sorted, return_counts=True)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    rank_to_code = np.argsort(u_rank)
    data = SequenceData(
        user_ids=np.arange(1, len(kept_users) + 1, dtype=np.int64),
        indptr=indptr,
        items=new_item_id[items_sorted].astype(np.int32),
        num_items=int(len(used)),
        source=source,
        timestamps=timestamps[event],
    )
    return data, u_vocab[rank_to_code[kept_users]], i_vocab[used]


def read_amazon_reviews(path):
    """Reads a 2014 Amazon review file (JSON lines, optionally gzipped).

    Returns:
        `(reviewer_ids, asins, unix_times)` numpy arrays.

    Raises:
        DataFormatError: naming the line of invalid JSON or a missing field.
    """
    reviewers, asins, times = [], [], []
    with _open_text(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                try:
                    record = ast.literal_eval(line)
                except (ValueError, SyntaxError):
                    raise DataFormatError(path, line_no, f"not a JSON object ({err.msg})") from None
            try:
                reviewers.append(record["reviewerID"])
                asins.append(record["asin"])
                times.append(int(record["unixReviewTime"]))
            except (KeyError, TypeError, ValueError) as err:
                raise DataFormatError(path, line_no, f"missing or bad field {err}") from None
    if not reviewers:
        raise DataFormatError(path, None, "the file holds no reviews")
    return np.array(reviewers), np.array(asins), np.array(times, dtype=np.int64)


def read_amazon_metadata(path, asins):
    """Brand and category path of each wanted ASIN from a 2014 metadata file.

    Lines are Python literals (the 2014 files use single quotes). Returns a
    dict ASIN -> list of attribute names: the brand (if any) followed by the
    category paths' names without each path's top level.
    """
    wanted = set(asins.tolist() if isinstance(asins, np.ndarray) else asins)
    attributes = {}
    with _open_text(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = ast.literal_eval(line)
            except (ValueError, SyntaxError):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    raise DataFormatError(path, line_no, "not a Python/JSON dict") from None
            asin = record.get("asin") if isinstance(record, dict) else None
            if asin is None:
                raise DataFormatError(path, line_no, "no 'asin' field")
            if asin not in wanted:
                continue
            names = []
            if record.get("brand"):
                names.append(str(record["brand"]))
            for path_names in record.get("categories", []):
                for name in path_names[1:]:
                    if name not in names:
                        names.append(name)
            attributes[asin] = names
    return attributes


def attribute_table(item_vocab, item_attributes, min_count=5):
    """Item id -> attribute ids, keeping attributes seen at least `min_count` times.

    Attribute ids are numbered 1.. by first appearance in item-id order.
    Returns `(dict item_id -> [attribute ids], list of attribute names)`.
    """
    counts = {}
    for asin in item_vocab:
        for name in item_attributes.get(asin, []):
            counts[name] = counts.get(name, 0) + 1
    ids, names, table = {}, [], {}
    for item_id, asin in enumerate(item_vocab, 1):
        row = []
        for name in item_attributes.get(asin, []):
            if counts[name] < min_count:
                continue
            if name not in ids:
                ids[name] = len(ids) + 1
                names.append(name)
            row.append(ids[name])
        table[item_id] = row
    return table, names


def prepare_amazon(reviews_path, output_dir, name, metadata_path=None, k=5, min_attribute_count=5):
    """Raw Amazon 2014 files -> `<name>.txt` (+ `<name>_item2attributes.json`).

    Returns the `SequenceData` written.
    """
    from keras_fame.data.sequences import write_sequences

    reviewers, asins, times = read_amazon_reviews(reviews_path)
    data, users, items = build_sequences(reviewers, asins, times, k=k, source=os.fspath(reviews_path))
    os.makedirs(output_dir, exist_ok=True)
    write_sequences(os.path.join(output_dir, f"{name}.txt"), data)
    with open(os.path.join(output_dir, f"{name}_item_ids.json"), "w") as f:
        json.dump({str(i): asin for i, asin in enumerate(items.tolist(), 1)}, f)
    if metadata_path is not None:
        table, names = attribute_table(items.tolist(), read_amazon_metadata(metadata_path, items), min_attribute_count)
        with open(os.path.join(output_dir, f"{name}_item2attributes.json"), "w") as f:
            json.dump({str(i): ids for i, ids in table.items()}, f)
        with open(os.path.join(output_dir, f"{name}_item2attributes_names.json"), "w") as f:
            json.dump({str(i): n for i, n in enumerate(names, 1)}, f)
    return data


def read_movielens_ratings(path):
    """Reads MovieLens `ratings.csv` with pyarrow (vectorised, tens of millions of rows).

    Returns `(user_ids, movie_ids, timestamps)` int64 arrays.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path = os.fspath(path)
    try:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={"userId": pa.int64(), "movieId": pa.int64(), "timestamp": pa.int64()},
                include_columns=["userId", "movieId", "timestamp"],
            ),
        )
    except (pa.ArrowInvalid, KeyError) as err:
        # pyarrow's message names the row ("CSV conversion error ... row N").
        raise DataFormatError(path, None, f"not a MovieLens ratings.csv: {err}") from None
    users = table.column("userId").to_numpy()
    movies = table.column("movieId").to_numpy()
    if len(users) == 0:
        raise DataFormatError(path, None, "the file holds no ratings")
    bad = np.flatnonzero((users <= 0) | (movies <= 0))
    if len(bad):
        raise DataFormatError(path, int(bad[0]) + 2, "ids must be positive")  # +1 header, +1 1-based
    return users, movies, table.column("timestamp").to_numpy()


def prepare_movielens(ratings_path, output_dir, name="ml-20m", k=5):
    """MovieLens `ratings.csv` -> `<name>.txt` (5-core, chronological)."""
    from keras_fame.data.sequences import write_sequences

    users, movies, times = read_movielens_ratings(ratings_path)
    data, _, movie_vocab = build_sequences(users, movies, times, k=k, source=os.fspath(ratings_path))
    os.makedirs(output_dir, exist_ok=True)
    write_sequences(os.path.join(output_dir, f"{name}.txt"), data)
    _write_item_ids(os.path.join(output_dir, f"{name}_item_ids.json"), movie_vocab)
    return data


def read_interactions_csv(path, user_column="user", item_column="item", time_column="timestamp"):
    """Reads a user's own interaction log: a CSV with a header and one event per row.

    User and item ids may be any strings (they are kept as strings);
    timestamps any numbers (seconds, milliseconds, or just an order). Read
    with pyarrow (vectorised). Other columns are ignored.

    Returns:
        `(users, items, timestamps)`: object arrays of strings and a float64 array.

    Raises:
        DataFormatError: naming the file (and the line where known) for a
            missing column, an empty id, or a timestamp that is not a number.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path = os.fspath(path)
    columns = [user_column, item_column, time_column]
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataFormatError(path, 1, f"not a readable CSV file: {err}") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataFormatError(path, 1, f"missing column(s) {missing}; the header has {header}")
    try:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={user_column: pa.string(), item_column: pa.string(), time_column: pa.float64()},
                include_columns=columns,
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as err:  # pyarrow's message quotes the offending row
        _raise_first_bad_time(path, time_column, err)
    if table.num_rows == 0:
        raise DataFormatError(path, None, "the file holds no interactions")
    users = table.column(user_column).to_numpy(zero_copy_only=False)
    items = table.column(item_column).to_numpy(zero_copy_only=False)
    times = table.column(time_column).to_numpy(zero_copy_only=False)
    for name, values in ((user_column, users), (item_column, items)):
        empty = np.flatnonzero([v is None or v == "" for v in values])
        if len(empty):
            raise DataFormatError(path, int(empty[0]) + 2, f"empty {name!r}")  # +1 header, +1 1-based
    bad_time = np.flatnonzero(~np.isfinite(times.astype(np.float64)))
    if len(bad_time):
        raise DataFormatError(path, int(bad_time[0]) + 2, f"{time_column!r} is empty or not a finite number")
    return users.astype(object), items.astype(object), times.astype(np.float64)


def _raise_first_bad_time(path, time_column, err):
    """Error path only: finds the line of the first timestamp that is not a number."""
    import pyarrow.csv as pacsv

    try:
        raw = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(include_columns=[time_column],
                                                                        column_types={time_column: "string"}))
        for row, value in enumerate(raw.column(time_column).to_pylist()):
            try:
                float(value)
            except (TypeError, ValueError):
                raise DataFormatError(path, row + 2, f"{time_column!r} is not a number: {value!r}") from None
    except DataFormatError:
        raise
    except Exception:  # the file is broken in another way: report pyarrow's own message
        pass
    raise DataFormatError(path, None, f"bad row: {err}") from None


def prepare_interactions(csv_path, output_dir, name, k=5, **columns):
    """A user's CSV log -> `<output_dir>/<name>.txt` (S3-Rec format) and `<name>_item_ids.json`.

    Ids are remapped to `1..num_items` (`build_sequences`, k-core `k`);
    the JSON maps each internal id (as a string key) to the original item
    id, so recommendations can be answered in the user's own ids
    (`keras-fame recommend`, `load_item_ids`).

    Returns:
        `(sequence file path, SequenceData, item vocabulary)`, the vocabulary
        an array whose entry `i - 1` is the original id of internal item `i`.
    """
    from keras_fame.data.sequences import write_sequences

    users, items, times = read_interactions_csv(csv_path, **columns)
    data, _, item_vocab = build_sequences(users, items, times, k=k, source=os.fspath(csv_path))
    os.makedirs(output_dir, exist_ok=True)
    sequence_path = os.path.join(output_dir, f"{name}.txt")
    write_sequences(sequence_path, data)
    _write_item_ids(os.path.join(output_dir, f"{name}_item_ids.json"), item_vocab)
    return sequence_path, data, item_vocab


def _write_item_ids(path, vocab):
    """`{"internal id": original id}` JSON for a vocabulary whose entry `i - 1` is item `i`'s original id."""
    with open(path, "w") as f:
        json.dump({str(i): v for i, v in enumerate(vocab.tolist(), 1)}, f)


def load_item_ids(path):
    """Reads an `*_item_ids.json` mapping: returns `(internal -> original dict, original -> internal dict)`."""
    try:
        with open(path) as f:
            mapping = json.load(f)
        forward = {int(k): str(v) for k, v in mapping.items()}
    except (OSError, ValueError, AttributeError) as err:
        raise DataFormatError(path, None, f"not an item-id mapping (JSON object of internal id -> id): {err}") from None
    return forward, {v: k for k, v in forward.items()}
