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
