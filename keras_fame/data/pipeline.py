"""Input pipelines for `model.fit`: a backend-neutral `PyDataset` and `tf.data`.

Training rows are left-padded to `max_len`, but most sequences in the Amazon
data are far shorter (Toys: 8.6 items on average, `L` = 50). Both pipelines
therefore *bucket by length*: a batch is cut to the width of its longest row,
rounded up to a bucket boundary. Because rows are left-padded and the models
mask padded keys and number positions from the right (the newest item is
always position `L - 1`), a cut batch gives exactly the same outputs and loss
as the full-width one, at a fraction of the cost of the `[batch, L, items]`
logits. Few boundaries keep the number of compiled shapes small.
"""

import keras
import numpy as np

from keras_fame.distribution import batch_shards


def default_buckets(max_len):
    """Bucket widths: 8, 16, 32, ... up to and including `max_len`."""
    widths = []
    w = 8
    while w < max_len:
        widths.append(w)
        w *= 2
    widths.append(max_len)
    return tuple(widths)


def _row_lengths(inputs):
    # Left-padded rows: the length is the width minus the leading zeros.
    nonzero = inputs != 0
    first = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), inputs.shape[1])
    return inputs.shape[1] - first


def _normalize_buckets(buckets, max_len):
    """Sorted, unique widths in `1..max_len` that always include `max_len`."""
    widths = sorted({int(w) for w in (buckets or default_buckets(max_len)) if 0 < int(w) <= max_len} | {max_len})
    return tuple(widths)


class TrainingBatches(keras.utils.PyDataset):
    """Shuffled, length-bucketed `(inputs, targets)` batches for `model.fit`.

    Works with every backend (numpy batches). Each epoch, rows are shuffled,
    then sorted by bucket (stable, so the shuffle decides who shares a
    batch), cut into batches, and the batch order is shuffled again. Epoch
    `e`'s order depends on `(seed, e)` only. Each `on_epoch_end` moves to
    the next epoch; `set_epoch(e)` jumps to epoch `e`, so a caller that sets
    it from the trainer's epoch number (`fit_with_early_stopping` does, in
    `on_epoch_begin`) gets the same batches whether training ran through or
    was resumed at `e`. Pass `shuffle=False` to `fit`: this class shuffles.

    Args:
        inputs, targets: int32 `[rows, max_len]`, left-padded
            (`LeaveOneOutSplit.train_inputs` / `train_targets`).
        batch_size: rows per batch.
        shuffle: reshuffle every epoch.
        seed: for the shuffles.
        buckets: batch widths, or None for `default_buckets(max_len)`;
            `(max_len,)` turns bucketing off.
        row_multiple: every batch is padded with all-padding rows (target 0,
            which every loss masks out, so the loss and its gradient are
            unchanged) to a multiple of this many rows. Defaults to None: the
            batch shards of the `keras.distribution` set when the batches
            are made (1 without one), so data-parallel JAX, which splits
            every batch evenly over the devices, takes any last batch.
    """

    def __init__(self, inputs, targets, batch_size=256, shuffle=True, seed=0, buckets=None, row_multiple=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.row_multiple = batch_shards() if row_multiple is None else int(row_multiple)
        if self.row_multiple < 1:
            raise ValueError(f"row_multiple={row_multiple}: must be a positive integer")
        if inputs.shape != targets.shape:
            raise ValueError(f"inputs {inputs.shape} and targets {targets.shape} differ in shape")
        if len(inputs) == 0:
            raise ValueError("no training rows")
        self.inputs = np.ascontiguousarray(inputs, dtype=np.int32)
        self.targets = np.ascontiguousarray(targets, dtype=np.int32)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.buckets = _normalize_buckets(buckets, inputs.shape[1])
        self.seed = seed
        self.epoch = 0
        lengths = _row_lengths(self.inputs)
        self._bucket_of_row = np.searchsorted(np.asarray(self.buckets), lengths, side="left")
        self._plan()

    def _plan(self):
        rng = np.random.default_rng(None if self.seed is None else [int(self.seed), self.epoch])
        rows = np.arange(len(self.inputs))
        if self.shuffle:
            rows = rng.permutation(rows)
        rows = rows[np.argsort(self._bucket_of_row[rows], kind="stable")]
        batches = []
        for b in np.unique(self._bucket_of_row):
            in_bucket = rows[self._bucket_of_row[rows] == b]
            width = self.buckets[b]
            for i in range(0, len(in_bucket), self.batch_size):
                batches.append((in_bucket[i : i + self.batch_size], width))
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        self._batches = _varied_first(batches)

    def __len__(self):
        return len(self._batches)

    def __getitem__(self, index):
        rows, width = self._batches[index]
        rows = np.sort(rows)
        inputs, targets = self.inputs[rows, -width:], self.targets[rows, -width:]
        spare = -len(rows) % self.row_multiple
        if spare:  # all-padding rows: no position counts in any loss
            inputs, targets = (np.pad(a, [(0, spare), (0, 0)]) for a in (inputs, targets))
        return inputs, targets

    def on_epoch_end(self):
        self.epoch += 1
        self._plan()

    def set_epoch(self, epoch):
        """Plans the batches of epoch `epoch` (0-based), e.g. when training resumes there."""
        if int(epoch) == self.epoch:  # already planned (by `on_epoch_end` or the constructor)
            return
        self.epoch = int(epoch)
        self._plan()

    @property
    def num_positions(self):
        return int(np.count_nonzero(self.targets))

    @property
    def padded_cells(self):
        """Cells actually computed per epoch (rows x bucket width)."""
        return int(sum(len(r) * w for r, w in self._batches))


def _varied_first(batches):
    """Moves two batches that differ in rows and width to the front.

    Keras' TensorFlow adapter infers a `PyDataset`'s tensor spec from its
    first batches; if they agreed in a dimension, later batches of another
    size would be rejected. Only the order changes.
    """
    if len(batches) < 2:
        return batches
    sizes = [len(rows) for rows, _ in batches]
    widths = [w for _, w in batches]
    first = min(range(len(batches)), key=lambda i: sizes[i])
    second = next(
        (i for i in range(len(batches)) if sizes[i] != sizes[first] and widths[i] != widths[first]),
        next((i for i in range(len(batches)) if widths[i] != widths[first] or sizes[i] != sizes[first]), None),
    )
    if second is None:
        return batches
    front = [batches[first], batches[second]]
    return front + [b for i, b in enumerate(batches) if i not in (first, second)]


def make_tf_dataset(inputs, targets, batch_size=256, shuffle=True, seed=0, buckets=None):
    """A `tf.data` pipeline over training rows: shuffle, bucket, batch, prefetch.

    TensorFlow is imported here, not at package import. Batches are grouped
    by length bucket (`group_by_window`) and cut to the bucket width, as in
    `TrainingBatches`.

    Returns:
        `tf.data.Dataset` of `(inputs, targets)` int32 batches.
    """
    import tensorflow as tf

    inputs = np.asarray(inputs, dtype=np.int32)
    targets = np.asarray(targets, dtype=np.int32)
    max_len = inputs.shape[1]
    buckets = _normalize_buckets(buckets, max_len)
    widths = tf.constant(buckets, dtype=tf.int64)
    bucket_ids = np.searchsorted(np.asarray(buckets), _row_lengths(inputs), side="left")

    ds = tf.data.Dataset.from_tensor_slices((inputs, targets, bucket_ids.astype(np.int64)))
    if shuffle:
        ds = ds.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)
    ds = ds.group_by_window(
        key_func=lambda x, y, b: b,
        reduce_func=lambda key, window: window.batch(batch_size).map(
            lambda x, y, b: (x[:, max_len - widths[key] :], y[:, max_len - widths[key] :])
        ),
        window_size=batch_size,
    )
    return ds.prefetch(tf.data.AUTOTUNE)
