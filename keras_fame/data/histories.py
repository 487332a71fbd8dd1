"""Checking user histories given to `recommend`: integer item ids, one row per user, none empty."""

import numbers

import numpy as np


def as_item_ids(values, where):
    """An int64 array of `values`, refusing what is not an integer id (fractions, NaN, inf, strings, booleans).

    `where(index)` names the position of a refused value in messages.
    """
    array = np.asarray(values)
    if isinstance(values, (list, tuple)) and any(isinstance(v, (bool, np.bool_)) for v in values):
        array = np.asarray(values, dtype=object)  # numpy would read True as 1: refuse it below instead
    if array.dtype.kind in "iu":
        return array.astype(np.int64)
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array) | (array != np.round(array))
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{where(index)} holds {float(array[index])!r}, not an integer item id")
        return array.astype(np.int64)
    objects = np.asarray(values, dtype=object)
    for index in np.ndindex(objects.shape):
        value = objects[index]
        value = value.item() if isinstance(value, np.generic) else value
        integral = isinstance(value, numbers.Integral) or (
            isinstance(value, float) and np.isfinite(value) and value.is_integer()
        )
        if isinstance(value, bool) or not integral:
            raise ValueError(f"{where(index)} holds {value!r}, not an integer item id")
    return objects.astype(np.int64)


def histories_to_arrays(histories, num_items):
    """Validated histories -> (CSR indptr, items) of the full histories.

    Raises `ValueError` naming the row (and column) of a value that is not
    an item id in `1..num_items` (0 is padding in an array), and for an
    empty history: a model ranks from what a user did, so a user with no
    history has no answer here (serve popular items instead).
    """
    if isinstance(histories, np.ndarray):
        if histories.ndim != 2:
            raise ValueError(f"a history array must be 2-D [users, seq], got shape {histories.shape}")
        arr = as_item_ids(histories, lambda i: f"histories[{i[0]}, {i[1]}]")
        bad = (arr < 0) | (arr > num_items)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"histories[{r}, {c}] = {arr[r, c]} is not an item id in 0..{num_items}")
        # Non-zero entries in row order: the full history of each row.
        lengths = np.count_nonzero(arr, axis=1)
        flat = arr[arr != 0]
    else:
        if isinstance(histories, (str, bytes)):
            raise ValueError("histories must be a list of item-id sequences, not a string")
        histories = list(histories)
        if len(histories) == 0:
            raise ValueError("no histories given")
        rows = []
        for r, history in enumerate(histories):
            if isinstance(history, (str, bytes)):
                raise ValueError(f"history {r} is the string {history!r}, not a sequence of item ids")
            row = as_item_ids(history, lambda i, r=r: f"history {r}" + (f" at position {i[0]}" if i else "")).reshape(-1)
            rows.append(row)
        lengths = np.array([len(row) for row in rows], dtype=np.int64)
        flat = np.concatenate(rows)
        bad = np.flatnonzero((flat < 1) | (flat > num_items))
        if len(bad):
            row = int(np.searchsorted(np.cumsum(lengths), bad[0], side="right"))
            raise ValueError(f"history {row} holds {flat[bad[0]]}, not an item id in 1..{num_items}")
    empty = np.flatnonzero(lengths == 0)
    if len(empty):
        raise ValueError(
            f"history {int(empty[0])} is empty: the model ranks from a user's history, so it has no answer for a user "
            "without one (recommend popular items to such users instead)"
        )
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    return indptr, flat
