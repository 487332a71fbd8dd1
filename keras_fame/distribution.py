"""Training on several devices with Keras' own distribution API (JAX) or `tf.distribute` (TensorFlow).

Nothing here is a distributed engine of our own: these are the layouts that
fit SASRec/FAME, for `keras.distribution` (JAX backend) and notes for
`tf.distribute` (TensorFlow backend).

Data parallel (JAX): every device holds all weights, the batch is split::

    keras.distribution.set_distribution(keras.distribution.DataParallel())
    model = keras_fame.FAME(num_items, ...)        # build after setting the distribution
    model.compile(); model.fit(batches, ...)

Model parallel (JAX), for item tables too big for one device::

    keras.distribution.set_distribution(keras_fame.distribution.model_parallel(model_devices=2))

shards the item table (and the frozen content table of `item_content`
models) by embedding columns over the `"model"` axis of a
`(devices / model_devices, model_devices)` mesh, and the batch over
`"batch"`; XLA partitions the scoring matmul and the softmax accordingly.
Columns, not rows: a row split needs `num_items + 1` to be divisible by the
device count, which a catalog rarely is, while `hidden_dim` (64 in the
paper) divides by 2, 4, 8.

Several machines (JAX): call `keras.distribution.initialize(
job_addresses="host1:1234,host2:1234", num_processes=2, process_id=i)` on
each host before building anything, then set the distribution as above over
`keras.distribution.list_devices()` (all hosts' devices); each host feeds its
own share of the batches.

TensorFlow: build and compile the model inside
`tf.distribute.MirroredStrategy().scope()` (several GPUs of one machine) and
call `fit` as usual; `MaskedSoftmaxCrossEntropy` is scaled the way Keras
expects under a strategy, so the reported loss and the gradient are those of
one device (each replica averages over its own positions).

Tested in CI on two virtual CPU devices (`tests/test_distribution.py`).
"""

import keras

ITEM_TABLE_VARIABLES = (r"item_embedding/item_embeddings$", r"item_embedding/content_embeddings$")


def item_table_layout_map(device_mesh, model_axis="model"):
    """A `keras.distribution.LayoutMap` that shards the item tables' columns over `model_axis`.

    Args:
        device_mesh: a `keras.distribution.DeviceMesh` with an axis named `model_axis`.
        model_axis: the mesh axis the embedding columns are split over.

    Returns:
        The layout map (other variables are replicated).
    """
    layout_map = keras.distribution.LayoutMap(device_mesh)
    for pattern in ITEM_TABLE_VARIABLES:
        layout_map[pattern] = (None, model_axis)
    return layout_map


def model_parallel(devices=None, model_devices=2, batch_axis="batch", model_axis="model"):
    """`keras.distribution.ModelParallel` with the item tables sharded by column (JAX backend).

    Args:
        devices: device names (default: `keras.distribution.list_devices()`).
        model_devices: devices the item table is split over; must divide the
            device count and `hidden_dim`.
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
