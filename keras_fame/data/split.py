"""Leave-one-out splits and fixed-width training/evaluation arrays.

Everything here is vectorised over users: a gather built with `np.repeat`
replaces the per-user Python loop.
"""

import dataclasses

import numpy as np


def pad_left(items, starts, ends, max_len, dtype=np.int32):
    """Left-pads ``items[starts[u]:ends[u]]`` per row, keeping the last `max_len`.

    Args:
        items: 1-D array of item ids.
        starts, ends: int arrays `[rows]`, half-open ranges into `items`.
        max_len: output width.

    Returns:
        `[rows, max_len]` array, 0 where padded, the most recent item in the
        last column.
    """
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    starts = np.maximum(starts, ends - max_len)
    lengths = np.maximum(ends - starts, 0)
    out = np.zeros((len(starts), max_len), dtype=dtype)
    total = int(lengths.sum())
    if total == 0:
        return out
    rows = np.repeat(np.arange(len(starts)), lengths)
    offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols = max_len - np.repeat(lengths, lengths) + offsets
    out[rows, cols] = items[np.repeat(starts, lengths) + offsets]
    return out


@dataclasses.dataclass(frozen=True)
class EvaluationSet:
    """Leave-one-out queries: each row's history and its held-out target.

    Attributes:
        inputs: int32 `[users, max_len]`, the last `max_len` history items,
            left-padded.
        targets: int32 `[users]`, the held-out item.
        history_indptr, history_items: the FULL history of each row (not only
            the last `max_len`), CSR, for excluding already-seen items.
        num_items: item vocabulary size (ids 1..num_items).
    """

    inputs: np.ndarray
    targets: np.ndarray
    history_indptr: np.ndarray
    history_items: np.ndarray
    num_items: int

    def __len__(self):
        return len(self.targets)

    def subset(self, rows):
        rows = np.asarray(rows)
        starts = self.history_indptr[rows]
        ends = self.history_indptr[rows + 1]
        lengths = ends - starts
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return EvaluationSet(
            self.inputs[rows],
            self.targets[rows],
            indptr,
            self.history_items[flat],
            self.num_items,
        )


@dataclasses.dataclass(frozen=True)
class LeaveOneOutSplit:
    """The paper's split: last item test, second-last validation, rest train.

    Attributes:
        train_inputs, train_targets: int32 `[rows, max_len]`; row `u` holds the
            user's training items shifted by one (inputs ``t[:-1]``, targets
            ``t[1:]``), left-padded, truncated to the last `max_len`. Every
            non-padded position is a (prefix, next item) example, which with
            causal attention is the same set of pairs as prefix augmentation.
            Users with a single training item contribute no row.
        validation, test: `EvaluationSet`s.
        num_items, max_len.
    """

    train_inputs: np.ndarray
    train_targets: np.ndarray
    validation: EvaluationSet
    test: EvaluationSet
    num_items: int
    max_len: int

    @property
    def num_train_positions(self):
        return int(np.count_nonzero(self.train_targets))


def leave_one_out(data, max_len=50):
    """Splits `SequenceData` leave-one-out, as in the paper (§5.2).

    Args:
        data: `SequenceData` whose users all have at least 3 items.
        max_len: `L`, the model's maximum sequence length.

    Returns:
        `LeaveOneOutSplit`.
    """
    indptr = data.indptr
    begin, end = indptr[:-1], indptr[1:]
    if np.any(end - begin < 3):
        raise ValueError("leave_one_out needs at least 3 items per user")
    train_end = end - 2  # exclusive: validation target at end-2, test at end-1
    has_pairs = train_end - begin >= 2
    tb, te = begin[has_pairs], train_end[has_pairs]
    train_inputs = pad_left(data.items, tb, te - 1, max_len)
    train_targets = pad_left(data.items, tb + 1, te, max_len)

    def evaluation_set(history_end):
        lengths = history_end - begin
        hist_indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = np.repeat(begin - hist_indptr[:-1], lengths) + np.arange(hist_indptr[-1])
        return EvaluationSet(
            inputs=pad_left(data.items, begin, history_end, max_len),
            targets=data.items[history_end].astype(np.int32),
            history_indptr=hist_indptr,
            history_items=data.items[flat],
            num_items=data.num_items,
        )

    return LeaveOneOutSplit(
        train_inputs=train_inputs,
        train_targets=train_targets,
        validation=evaluation_set(end - 2),
        test=evaluation_set(end - 1),
        num_items=data.num_items,
        max_len=max_len,
    )


def every_prefix_rows(inputs, targets):
    """One training row per (prefix, next item) pair, the target only at the last position.

    The layout of codebases that train on "every prefix as its own example
    with cross-entropy at the last position" (S3-Rec/BSARec family): the
    same pairs as `LeaveOneOutSplit.train_inputs/train_targets` (where a row
    predicts at every position), but `num_train_positions` rows, each with
    one target. Inputs stay left-padded, so length bucketing still applies.

    Args:
        inputs, targets: `[rows, max_len]` left-padded training arrays.

    Returns:
        `(prefix_inputs, prefix_targets)`, `[pairs, max_len]` each.
    """
    inputs = np.asarray(inputs)
    targets = np.asarray(targets)
    rows, cols = np.nonzero(targets)
    width = inputs.shape[1]
    # Row r's prefix ending at column c, shifted right so it ends in the last column.
    shift = width - 1 - cols
    source = np.arange(width)[None, :] - shift[:, None]
    valid = source >= 0
    prefix_inputs = np.where(valid, inputs[rows[:, None], np.maximum(source, 0)], 0).astype(inputs.dtype)
    prefix_targets = np.zeros_like(prefix_inputs)
    prefix_targets[:, -1] = targets[rows, cols]
    return prefix_inputs, prefix_targets
