"""Reading and writing interaction sequences in the S3-Rec text format.

One user per line, ``user_id item_id item_id ...``, separated by white space,
items in chronological order, ids positive integers (0 is kept for padding).
Sequences are held as a CSR pair (``indptr``, ``items``) so that every later
step (splits, padding, evaluation) is a handful of numpy operations, whatever
the number of events.
"""

import dataclasses
import os

import numpy as np

# bytes.split() splits on exactly these (ASCII white space).
_WHITESPACE = np.array([ord(c) for c in " \t\n\r\x0b\x0c"], dtype=np.uint8)
_INT32_MAX = np.iinfo(np.int32).max


class DataFormatError(ValueError):
    """Bad input data. The message starts with ``path:line:`` when known."""

    def __init__(self, path, line, reason):
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


@dataclasses.dataclass(frozen=True)
class SequenceData:
    """Users' chronological item sequences in CSR form.

    Attributes:
        user_ids: int64 array `[num_users]`, the ids as read.
        indptr: int64 array `[num_users + 1]`; user `u` owns
            ``items[indptr[u]:indptr[u + 1]]``.
        items: int32 array `[num_events]`, item ids, oldest first.
        num_items: the largest item id (the model's item vocabulary is
            ``0..num_items`` with 0 = padding).
        source: where the data came from, for messages.
        timestamps: optional int64/float array `[num_events]`, each event's
            time, aligned with `items`; None when the source has none (the
            S3-Rec files carry no times; the raw Amazon/MovieLens/CSV logs do,
            and `keras_fame.data.preprocess.build_sequences` keeps them).
    """

    user_ids: np.ndarray
    indptr: np.ndarray
    items: np.ndarray
    num_items: int
    source: str = "<memory>"
    timestamps: np.ndarray = None

    @property
    def num_users(self):
        return len(self.user_ids)

    @property
    def num_events(self):
        return len(self.items)

    @property
    def lengths(self):
        return np.diff(self.indptr)

    def sequence(self, u):
        return self.items[self.indptr[u] : self.indptr[u + 1]]

    def stats(self):
        lengths = self.lengths
        return {
            "users": int(self.num_users),
            "items": int(self.num_items),
            "distinct_items": int(np.unique(self.items).size),
            "actions": int(self.num_events),
            "avg_len": float(lengths.mean()) if len(lengths) else 0.0,
            "min_len": int(lengths.min()) if len(lengths) else 0,
            "max_len": int(lengths.max()) if len(lengths) else 0,
        }


def from_lists(sequences, user_ids=None, num_items=None, min_length=3):
    """Builds `SequenceData` from Python lists (small data, tests, demos)."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = (
        np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
        if len(sequences)
        else np.zeros(0, np.int64)
    )
    if user_ids is None:
        user_ids = np.arange(1, len(sequences) + 1, dtype=np.int64)
    user_ids = np.asarray(user_ids, dtype=np.int64)
    _validate(user_ids, indptr, items, "<memory>", np.arange(len(lengths)) + 1, min_length)
    if num_items is None:
        num_items = int(items.max()) if len(items) else 0
    elif len(items) and items.max() > num_items:
        raise ValueError(f"item id {int(items.max())} is larger than num_items={num_items}")
    return SequenceData(user_ids, indptr, items.astype(np.int32), int(num_items))


def read_sequences(path, min_length=3):
    """Reads an S3-Rec sequence file with strict validation.

    The parse is vectorised: the file is tokenised once by ``bytes.split``
    and line numbers come from a numpy scan of the raw bytes, so millions of
    events take about a second.

    Args:
        path: the text file.
        min_length: users need at least this many items (3 allows a
            leave-one-out split with one training item).

    Returns:
        `SequenceData`.

    Raises:
        DataFormatError: naming the file, the line and the reason, for an
            empty file, a blank line, a non-integer or non-positive id, an id
            too large for int32, a line with fewer than `min_length` items or
            a user id that appears twice.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.strip():
        raise DataFormatError(path, None, "the file is empty")

    buf = np.frombuffer(raw, dtype=np.uint8)
    is_space = np.isin(buf, _WHITESPACE)
    starts = ~is_space
    starts[1:] &= is_space[:-1]
    # 1-based line number of every token.
    line_of_byte = np.cumsum(buf == ord("\n")) + 1
    token_lines = line_of_byte[starts]

    tokens = raw.split()
    try:
        values = np.array(tokens).astype(np.int64)
    except (ValueError, OverflowError):
        values = None
    if values is None or len(values) != len(token_lines):
        _raise_first_bad_token(path, tokens, token_lines)

    bad = np.flatnonzero(values <= 0)
    if len(bad):
        i = bad[0]
        raise DataFormatError(
            path, int(token_lines[i]), f"id {int(values[i])} is not positive (ids start at 1)"
        )
    bad = np.flatnonzero(values > _INT32_MAX)
    if len(bad):
        i = bad[0]
        raise DataFormatError(path, int(token_lines[i]), f"id {int(values[i])} does not fit in int32")

    num_lines = int(line_of_byte[-1]) if buf[-1] != ord("\n") else int(line_of_byte[-1]) - 1
    counts = np.bincount(token_lines, minlength=num_lines + 1)[1:]
    blank = np.flatnonzero(counts == 0)
    if len(blank):
        raise DataFormatError(path, int(blank[0]) + 1, "blank line (expected 'user item item ...')")

    # First token of each line is the user, the rest are items.
    line_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    user_ids = values[line_start]
    is_item = np.ones(len(values), dtype=bool)
    is_item[line_start] = False
    items = values[is_item]
    lengths = counts - 1
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    _validate(user_ids, indptr, items, path, np.arange(1, num_lines + 1), min_length)
    return SequenceData(
        user_ids=user_ids,
        indptr=indptr,
        items=items.astype(np.int32),
        num_items=int(items.max()),
        source=path,
    )


def _raise_first_bad_token(path, tokens, token_lines):
    # Only on the error path: find the offending token to name its line.
    for token, line in zip(tokens, token_lines):
        try:
            int(token)
        except ValueError:
            shown = token.decode("utf-8", "replace")
            raise DataFormatError(path, int(line), f"{shown!r} is not an integer id") from None
    raise DataFormatError(path, None, "could not tokenise the file")


def _validate(user_ids, indptr, items, path, line_numbers, min_length):
    lengths = np.diff(indptr)
    if len(lengths) == 0:
        raise DataFormatError(path, None, "no users")
    if len(items) and items.min() <= 0:
        u = int(np.searchsorted(indptr, np.flatnonzero(items <= 0)[0], side="right") - 1)
        raise DataFormatError(path, int(line_numbers[u]), "item ids must be positive (0 is padding)")
    short = np.flatnonzero(lengths < min_length)
    if len(short):
        u = short[0]
        raise DataFormatError(
            path,
            int(line_numbers[u]),
            f"user {int(user_ids[u])} has {int(lengths[u])} item(s); at least {min_length} "
            "are needed for a leave-one-out split",
        )
    order = np.argsort(user_ids, kind="stable")
    dup = np.flatnonzero(user_ids[order][1:] == user_ids[order][:-1])
    if len(dup):
        first, second = sorted((order[dup[0]], order[dup[0] + 1]))
        raise DataFormatError(
            path,
            int(line_numbers[second]),
            f"user id {int(user_ids[second])} appears again (first on line {int(line_numbers[first])})",
        )


def write_sequences(path, data):
    """Writes `SequenceData` in the S3-Rec format (one user per line)."""
    lengths = data.lengths
    with open(path, "w") as f:
        for u in range(data.num_users):
            seq = data.items[data.indptr[u] : data.indptr[u] + lengths[u]]
            f.write(f"{int(data.user_ids[u])} " + " ".join(map(str, seq.tolist())) + "\n")
