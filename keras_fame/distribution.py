"""Training on several devices with Keras' own distribution API (JAX) or `tf.distribute` (TensorFlow).

Nothing here is a distributed engine of our own: these are the layouts that
fit SASRec/FAME, for `keras.distribution` (JAX backend) and
`tf.distribute.MirroredStrategy` (TensorFlow backend). From the command line:
`keras-fame train ... --distribute data` or `--distribute model
--model-devices K` (`distributed`).

Data parallel (JAX): every device holds all weights, the batch is split::

    keras.distribution.set_distribution(keras.distribution.DataParallel())
    model = keras_fame.FAME(num_items, ...)        # build after setting the distribution
    model.compile(); model.fit(batches, ...)

Model parallel (JAX), for item tables too big for one device::

    keras.distribution.set_distribution(keras_fame.distribution.model_parallel(model_devices=K))
    model = keras_fame.FAME(num_items, ..., row_multiple=K)

shards the item table (and the frozen content table of `item_content`
models) by vocabulary rows over the `"model"` axis of a
`(devices / K, K)` mesh, and the batch over `"batch"`: each device holds
`(num_items + 1) / K` items' rows and computes their scores, and XLA
partitions the scoring matmul and the softmax accordingly. `row_multiple=K`
pads the tables' rows to a multiple of `K` (the spare rows are never read).

Several machines (JAX): run the same command on every host with
`keras.distribution.initialize(job_addresses="host1:1234,host2:1234",
num_processes=2, process_id=i)` called first (from Python, before anything is
built); `keras.distribution.list_devices()` then lists every host's devices
and each host feeds its own share of the batches. For example, on host `i`
of two::

    python -c "import keras; keras.distribution.initialize('host1:1234,host2:1234', 2, $i);
               from keras_fame.experiments.cli import main; main('toys', ['--distribute', 'data'])"

TensorFlow: `--distribute data` builds, compiles and fits inside
`tf.distribute.MirroredStrategy().scope()` (the GPUs of one machine, or
several logical CPUs); `MaskedSoftmaxCrossEntropy` is scaled the way Keras
expects under a strategy, so the reported loss and the gradient are those of
one device. Model parallelism needs JAX.

Tested on 2 and 4 virtual CPU devices (`tests/test_distribution.py`).
"""

import contextlib

import keras

ITEM_TABLE_VARIABLES = (r"item_embedding/item_embeddings$", r"item_embedding/content_embeddings$")
MODES = ("data", "model")


def batch_shards():
    """How many parts the current `keras.distribution` splits a batch into (1 without one).

    Data-parallel JAX splits every batch evenly over the batch axis of the
    device mesh, so `TrainingBatches` and `predict_rows` pad batches to a
    multiple of this.
    """
    distribution = keras.distribution.distribution()
    if distribution is None:
        return 1
    mesh = distribution.device_mesh
    return int(mesh.shape[list(mesh.axis_names).index(distribution.batch_dim_name)])


def item_table_layout_map(device_mesh, model_axis="model"):
    """A `keras.distribution.LayoutMap` that shards the item tables' rows over `model_axis`.

    Args:
        device_mesh: a `keras.distribution.DeviceMesh` with an axis named `model_axis`.
        model_axis: the mesh axis the vocabulary rows are split over. Defaults to `"model"`.

    Returns:
        The layout map (other variables are replicated). The tables' row
        count must be a multiple of the axis size (`row_multiple`).
    """
    layout_map = keras.distribution.LayoutMap(device_mesh)
    for pattern in ITEM_TABLE_VARIABLES:
        layout_map[pattern] = (model_axis, None)
    return layout_map


def model_parallel(devices=None, model_devices=2, batch_axis="batch", model_axis="model"):
    """`keras.distribution.ModelParallel` with the item tables sharded by rows (JAX backend).

    Args:
        devices: device names. Defaults to `keras.distribution.list_devices()`.
        model_devices: devices the item tables are split over; must divide
            the device count. Build the model with `row_multiple=model_devices`.
            Defaults to 2.
        batch_axis, model_axis: the mesh axis names.

    Returns:
        A distribution to pass to `keras.distribution.set_distribution`
        before the model is built.
    """
    devices = list(devices or keras.distribution.list_devices())
    if model_devices < 1 or len(devices) % model_devices:
        raise ValueError(f"model_devices={model_devices} must divide the {len(devices)} devices")
    mesh = keras.distribution.DeviceMesh(
        (len(devices) // model_devices, model_devices), [batch_axis, model_axis], devices
    )
    return keras.distribution.ModelParallel(
        layout_map=item_table_layout_map(mesh, model_axis), batch_dim_name=batch_axis
    )


@contextlib.contextmanager
def distributed(mode=None, model_devices=1, devices=None):
    """Builds, compiles and trains what runs inside on several devices.

    Args:
        mode: None (one device, nothing changes), `"data"` (JAX:
            `DataParallel`; TensorFlow: `MirroredStrategy`) or `"model"`
            (JAX only: `model_parallel`; build the models with
            `row_multiple=model_devices`).
        model_devices: with `"model"`, the devices the item tables are split
            over. Defaults to 1.
        devices: device names. Defaults to every device of the backend.

    Raises:
        ValueError: for an unknown mode, model parallelism off JAX, or a
            `model_devices` that does not divide the device count.
    """
    if mode is None:
        yield
        return
    if mode not in MODES:
        raise ValueError(f"distribute={mode!r}: must be one of {', '.join(MODES)}")
    backend = keras.backend.backend()
    if backend == "jax":
        if mode == "data":
            distribution = keras.distribution.DataParallel(devices=list(devices) if devices else None)
        else:
            distribution = model_parallel(devices, model_devices)
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(distribution)
        try:
            yield
        finally:
            keras.distribution.set_distribution(previous)
    elif backend == "tensorflow" and mode == "data":
        import tensorflow as tf

        with tf.distribute.MirroredStrategy(devices).scope():
            yield
    else:
        raise ValueError(f"distribute={mode!r} is not available on the {backend} backend "
                         "(data: JAX or TensorFlow; model: JAX)")
