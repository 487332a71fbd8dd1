import numpy as np
import pytest

from keras_fame.data import TrainingBatches, default_buckets, from_lists, leave_one_out, make_tf_dataset
from keras_fame.data.synthetic import planted_facets


def _split():
    data, _ = planted_facets(num_users=300, min_length=3, max_length=40, seed=1)
    return leave_one_out(data, max_len=32)


def _positions(batches):
    """Multiset of (input prefix tail, target) pairs, i.e. the training examples."""
    pairs = []
    for x, y in batches:
        x, y = np.asarray(x), np.asarray(y)
        for row_x, row_y in zip(x, y):
            pairs.extend((tuple(np.concatenate([[0, 0, 0], row_x[: i + 1]])[-3:].tolist()), int(row_y[i])) for i in np.flatnonzero(row_y))
    return sorted(pairs)


def test_buckets():
    assert default_buckets(50) == (8, 16, 32, 50)
    assert default_buckets(8) == (8,)


def test_every_position_once_per_epoch_and_only_padding_cut():
    split = _split()
    batches = TrainingBatches(split.train_inputs, split.train_targets, batch_size=32, seed=0)
    full = _positions([(split.train_inputs, split.train_targets)])
    for _ in range(2):
        epoch = [batches[i] for i in range(len(batches))]
        assert _positions(epoch) == full
        assert sum(len(x) for x, _ in epoch) == len(split.train_inputs)
        assert {x.shape[1] for x, _ in epoch} <= set(default_buckets(32))
        batches.on_epoch_end()
    assert batches.padded_cells < split.train_inputs.size
    # The first two batches differ in both dimensions (Keras' TF adapter infers its spec from them).
    (a, _), (b, _) = batches[0], batches[1]
    assert a.shape[0] != b.shape[0] and a.shape[1] != b.shape[1]


def test_shuffles_between_epochs():
    split = _split()
    batches = TrainingBatches(split.train_inputs, split.train_targets, batch_size=32, seed=0)
    first = [batches[i][0].tolist() for i in range(len(batches))]
    batches.on_epoch_end()
    assert first != [batches[i][0].tolist() for i in range(len(batches))]


def test_tf_dataset_yields_the_same_examples():
    pytest.importorskip("tensorflow")
    split = _split()
    ds = make_tf_dataset(split.train_inputs, split.train_targets, batch_size=32, seed=0)
    epoch = [(x.numpy(), y.numpy()) for x, y in ds]
    assert _positions(epoch) == _positions([(split.train_inputs, split.train_targets)])
    assert {x.shape[1] for x, _ in epoch} <= set(default_buckets(32))


def test_rejects_mismatched_arrays():
    split = leave_one_out(from_lists([[1, 2, 3, 4]]), max_len=4)
    with pytest.raises(ValueError, match="differ in shape"):
        TrainingBatches(split.train_inputs, split.train_targets[:, 1:])
