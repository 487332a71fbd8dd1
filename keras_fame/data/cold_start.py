"""Cold-start protocol: items held out of training, evaluated only as test targets.

`hold_out_items` picks a random fraction of items and `remove_items` drops
their events from every sequence except where one is a user's LAST event
(the leave-one-out test target). After `leave_one_out`, training rows and
validation never contain a held-out item, so a model sees nothing of it but
what it is given apart from interactions (its text); the users whose test
target is held out are the cold-start users (`split_by_target`).
Mask the held-out items out of the training softmax as well
(`MaskedSoftmaxCrossEntropy(excluded_items=...)`), or they get gradient as
negatives.
"""

import numpy as np

from keras_fame.data.sequences import SequenceData


def hold_out_items(num_items, fraction=0.1, seed=0):
    """A sorted random `fraction` of the item ids `1..num_items`."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction={fraction} must be in (0, 1)")
    rng = np.random.default_rng(seed)
    count = max(1, int(round(fraction * num_items)))
    return np.sort(rng.choice(np.arange(1, num_items + 1), size=count, replace=False)).astype(np.int32)


def remove_items(data, items, min_length=3):
    """`data` without the events of `items`, except each user's last event.

    Users left with fewer than `min_length` items are dropped. Vectorised.

    Returns:
        `SequenceData` (same `num_items`, so item ids are unchanged).
    """
    hidden = np.zeros(data.num_items + 1, dtype=bool)
    hidden[np.asarray(items, dtype=np.int64)] = True
    is_last = np.zeros(data.num_events, dtype=bool)
    is_last[data.indptr[1:] - 1] = True
    keep = ~hidden[data.items] | is_last
    user_of_event = np.repeat(np.arange(data.num_users), data.lengths)
    lengths = np.bincount(user_of_event[keep], minlength=data.num_users)
    kept_users = lengths >= min_length
    keep &= kept_users[user_of_event]
    lengths = lengths[kept_users]
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return SequenceData(data.user_ids[kept_users], indptr, data.items[keep], data.num_items, data.source)


def split_by_target(evaluation_set, items):
    """`(cold, warm)` row indices: rows whose target is / is not one of `items`."""
    cold = np.isin(evaluation_set.targets, np.asarray(items))
    return np.flatnonzero(cold), np.flatnonzero(~cold)


def popularity_scores(split):
    """Item counts over the training rows' targets and first inputs, `[num_items + 1]` (padding -inf)."""
    counts = np.bincount(split.train_targets[split.train_targets > 0], minlength=split.num_items + 1).astype(np.float64)
    first = split.train_inputs[:, 0]
    counts += np.bincount(first[first > 0], minlength=split.num_items + 1)
    counts[0] = -np.inf
    return counts
