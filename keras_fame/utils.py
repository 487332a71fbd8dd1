"""Run-level settings shared by the pipeline and the experiments."""

import contextlib
import os

import keras
import numpy as np


def json_default(value):
    """`json.dump(..., default=json_default)`: numpy scalars as Python numbers; anything else unserialisable raises."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def predict_rows(model, inputs, rows=None):
    """`model.predict_on_batch(inputs)` with every output cut to the batch's `rows` (numpy).

    Under a `tf.distribute` strategy Keras' `predict_on_batch` runs the whole
    batch on every replica and concatenates the replicas' outputs: the first
    `rows` rows are the batch's answer, the others repeat it. Under a
    data-parallel `keras.distribution` (JAX) the batch is first padded with
    zero rows to a multiple of the batch shards (`distribution.batch_shards`).

    Args:
        model: a Keras model.
        inputs: its batch (an array, or a dict / list of arrays).
        rows: the batch's rows. Defaults to the first input's length.

    Returns:
        The outputs' structure with numpy arrays of `rows` rows.
    """
    if rows is None:
        first = inputs[next(iter(inputs))] if isinstance(inputs, dict) else inputs
        first = first[0] if isinstance(first, (list, tuple)) else first
        rows = len(first)
    from keras_fame.distribution import batch_shards

    spare = -rows % batch_shards()  # data-parallel JAX splits a batch evenly over the devices

    def pad(value):
        value = np.asarray(value)
        return np.pad(value, [(0, spare)] + [(0, 0)] * (value.ndim - 1)) if value.dtype.kind in "biuf" else value

    if spare:
        inputs = keras.tree.map_structure(pad, inputs)
    return keras.tree.map_structure(lambda value: np.asarray(value)[:rows], model.predict_on_batch(inputs))


def deterministic_environment(seed, environ=None):
    """The environment variables deterministic runs need set *before* the interpreter starts.

    `PYTHONHASHSEED` (string hashing, read only at interpreter start-up),
    `TF_DETERMINISTIC_OPS` / `TF_CUDNN_DETERMINISTIC` (TensorFlow GPU
    kernels) and `--xla_gpu_deterministic_ops=true` in `XLA_FLAGS` (JAX and
    XLA-compiled TensorFlow on GPUs). Returns a copy of `environ` (default
    `os.environ`) with them set; the `keras-fame train --deterministic`
    command re-executes itself with it when the current process lacks them.
    """
    env = dict(os.environ if environ is None else environ)
    env["PYTHONHASHSEED"] = str(int(seed))
    env["TF_DETERMINISTIC_OPS"] = "1"
    env["TF_CUDNN_DETERMINISTIC"] = "1"
    flag = "--xla_gpu_deterministic_ops=true"
    if flag not in env.get("XLA_FLAGS", "").split():
        env["XLA_FLAGS"] = " ".join(filter(None, [env.get("XLA_FLAGS", ""), flag]))
    return env


def missing_deterministic_environment(seed):
    """Names of the `deterministic_environment` variables this process was not started with (empty: all set)."""
    wanted = deterministic_environment(seed)
    return sorted(name for name in ("PYTHONHASHSEED", "TF_DETERMINISTIC_OPS", "TF_CUDNN_DETERMINISTIC", "XLA_FLAGS")
                  if os.environ.get(name) != wanted[name])


def set_deterministic(seed):
    """Seeds every generator and, on TensorFlow, turns on op determinism.

    With it, the same seed on the same machine and backend gives the same
    weights and metrics: `keras.utils.set_random_seed` seeds Python, numpy
    and the backend; `tf.config.experimental.enable_op_determinism()` makes
    TensorFlow's kernels (e.g. multi-threaded reductions, scatter-adds in
    gradients) run deterministically, at some cost in speed. JAX on CPU is
    deterministic given its PRNG keys, which Keras derives from the seed.
    Data order is already fixed by the pipelines' own seeded generators.
    What only takes effect at interpreter start (`PYTHONHASHSEED`, the GPU
    determinism variables) is `deterministic_environment`'s: start the
    process with it (the `keras-fame train --deterministic` command does).

    Returns:
        The names from `missing_deterministic_environment` (what this
        process lacks; recorded in `results.json`).
    """
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    return missing_deterministic_environment(seed)


@contextlib.contextmanager
def dtype_policy(name):
    """Builds the layers made inside the block under the Keras dtype policy `name` (None: unchanged).

    Keras' own mechanism (`keras.config.set_dtype_policy`), set for the block
    and restored after it. `dtype_policy("mixed_bfloat16")` is the pipeline's
    mixed precision: layers compute in bfloat16 and keep float32 variables
    (the optimizer updates float32 weights); the scoring heads (`ItemScores`,
    `FacetGatedHead`) stay float32 (`keras_fame.models.scoring_dtype`), so
    logits, the softmax, the loss and every ranking see float32 scores. A
    saved model records each layer's policy and loads the same outside the
    block.
    """
    if name is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def replace_atomically(path, write, suffix=""):
    """Calls `write(tmp)` for a temporary file beside `path`, then renames it over `path`.

    A kill during the write leaves the previous file under `path` intact (or
    no file), never a half-written one; the temporary file is removed if
    `write` fails. `suffix` ends the temporary name, for writers that insist
    on an extension (`.keras`, `.npy`).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}{suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_model_atomic(model, path):
    """`model.save(path)` through `replace_atomically` (never a half-written `.keras` archive)."""
    replace_atomically(path, model.save, suffix=".keras")
