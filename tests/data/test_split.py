import numpy as np
import pytest

from keras_fame.data import from_lists, leave_one_out, pad_left
from keras_fame.data.synthetic import planted_facet_walks, planted_facets


def _brute_force(sequences, max_len):
    train_x, train_y, val, test = [], [], [], []

    def left(seq):
        seq = list(seq)[-max_len:]
        return [0] * (max_len - len(seq)) + seq

    for s in sequences:
        t = s[:-2]
        if len(t) >= 2:
            train_x.append(left(t[:-1]))
            train_y.append(left(t[1:]))
        val.append((left(s[:-2]), s[-2], s[:-2]))
        test.append((left(s[:-1]), s[-1], s[:-1]))
    return train_x, train_y, val, test


def test_leave_one_out_equals_brute_force():
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, 50, size=rng.integers(3, 15)).tolist() for _ in range(40)]
    split = leave_one_out(from_lists(sequences), max_len=6)
    train_x, train_y, val, test = _brute_force(sequences, 6)
    assert split.train_inputs.tolist() == train_x
    assert split.train_targets.tolist() == train_y
    for ev, expected in ((split.validation, val), (split.test, test)):
        assert ev.inputs.tolist() == [e[0] for e in expected]
        assert ev.targets.tolist() == [e[1] for e in expected]
        for u, (_, _, history) in enumerate(expected):
            got = ev.history_items[ev.history_indptr[u] : ev.history_indptr[u + 1]]
            assert got.tolist() == history  # full history, not truncated
    assert split.num_train_positions == sum(min(len(s) - 3, 6) for s in sequences if len(s) >= 4)


def test_pad_left_keeps_the_newest():
    items = np.arange(1, 11)
    out = pad_left(items, [0, 5, 7], [5, 7, 7], 3)
    assert out.tolist() == [[3, 4, 5], [0, 6, 7], [0, 0, 0]]


def test_evaluation_subset():
    split = leave_one_out(from_lists([[1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11, 12]]), max_len=4)
    sub = split.test.subset([2, 0])
    assert sub.targets.tolist() == [12, 3]
    assert sub.history_items.tolist() == [8, 9, 10, 11, 1, 2]


def test_planted_facets_follow_one_facet():
    data, facts = planted_facets(num_users=300, noise=0.0, seed=3)
    colour, shape = facts["item_colour"], facts["item_shape"]
    for u in range(data.num_users):
        seq = data.sequence(u)
        followed = colour if facts["user_facet"][u] == 0 else shape
        assert len(set(followed[seq].tolist())) <= 2  # two favourites in the followed facet
    assert data.items.min() >= 1 and data.items.max() <= data.num_items


def test_planted_facet_walks_step_the_marked_facet_only():
    data, facts = planted_facet_walks(num_users=300, num_facets=3, num_values=5, jump=0.0, noise=0.0, seed=2)
    attributes = facts["item_attributes"]
    assert data.num_items == 5**3 + 3 and attributes.shape == (data.num_items + 1, 3)
    # Item ids decode to attributes and back.
    regular = np.arange(4, data.num_items + 1)
    assert np.array_equal(4 + attributes[regular] @ np.array([25, 5, 1]), regular)
    assert (attributes[:4] == -1).all()
    other_steps = []
    for u in range(data.num_users):
        seq = data.sequence(u)
        facet = facts["user_facet"][u]
        assert seq[0] == 1 + facet and (seq[1:] > 3).all()  # the marker opens the sequence, then no markers
        values = attributes[seq[1:]]
        assert ((np.diff(values[:, facet]) % 5) == 1).all()  # the followed value steps +1 every time
        other_steps.append(np.diff(values[:, [f for f in range(3) if f != facet]], axis=0) % 5 == 1)
    # The other attributes are random: +1 steps in them are about 1 in 5, not always.
    assert 0.1 < np.concatenate(other_steps).mean() < 0.3


def test_planted_facet_walks_jumps_and_noise_and_errors():
    data, facts = planted_facet_walks(num_users=2000, num_values=16, jump=0.1, noise=0.05, seed=0)
    attributes = facts["item_attributes"]
    steps = []
    for u in range(data.num_users):
        seq = data.sequence(u)[1:]
        followed = attributes[seq, facts["user_facet"][u]]
        steps.append(np.diff(followed) % 16 == 1)
    # P(+1) = P(no noise on either item) * P(step or a jump landing on +1)
    expected = 0.95**2 * (0.9 + 0.1 / 16) + (1 - 0.95**2) / 16
    assert abs(np.concatenate(steps).mean() - expected) < 0.02
    with pytest.raises(ValueError, match="min_length"):
        planted_facet_walks(min_length=1)
    with pytest.raises(ValueError, match="num_values"):
        planted_facet_walks(num_values=1)


def test_every_prefix_rows_hold_the_same_pairs_with_one_target_each():
    from keras_fame.data import every_prefix_rows

    data = from_lists([[1, 2, 3, 4, 5, 6], [7, 8, 9], [3, 1, 4, 1, 5, 9, 2, 6]], num_items=9)
    split = leave_one_out(data, max_len=4)
    inputs, targets = every_prefix_rows(split.train_inputs, split.train_targets)
    assert len(inputs) == split.num_train_positions
    assert (np.count_nonzero(targets, axis=1) == 1).all() and (targets[:, -1] > 0).all()
    expected = set()
    for x, y in zip(split.train_inputs, split.train_targets):
        for c in np.flatnonzero(y):
            prefix = tuple(v for v in x[: c + 1] if v)
            expected.add((prefix, int(y[c])))
    got = {(tuple(v for v in x if v), int(y[-1])) for x, y in zip(inputs, targets)}
    assert got == expected
    # Left-padded, the newest item in the last column.
    assert (inputs[:, -1] > 0).all()
