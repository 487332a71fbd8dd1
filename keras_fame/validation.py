"""Argument checks shared by the layers, models and the pipeline: one message style, naming the argument.

Every check raises `ValueError("<name>=<value>: <what is allowed>")` and
returns the value converted (`int`, `float`), so a constructor reads
`self.num_heads = positive_int("num_heads", num_heads)`.
"""

import numbers

import numpy as np

# Keyword arguments `keras.layers.Layer` / `keras.Model` take besides their named ones.
LAYER_KWARGS = frozenset({
    "name", "dtype", "trainable", "autocast", "input_shape", "batch_input_shape", "batch_size", "input_dim",
    "weights", "activity_regularizer",
})
MODEL_KWARGS = frozenset({"name", "trainable", "dtype"})


def _is_integer(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Integral):
        return True
    return isinstance(value, float) and np.isfinite(value) and float(value).is_integer()


def positive_int(name, value):
    """`value` as an int >= 1."""
    if not _is_integer(value) or int(value) < 1:
        raise ValueError(f"{name}={value!r}: must be a positive integer")
    return int(value)


def non_negative_int(name, value):
    """`value` as an int >= 0."""
    if not _is_integer(value) or int(value) < 0:
        raise ValueError(f"{name}={value!r}: must be an integer >= 0")
    return int(value)


def positive_float(name, value):
    """`value` as a finite float > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r}: must be a positive number")
    return float(value)


def non_negative_float(name, value):
    """`value` as a finite float >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name}={value!r}: must be a number >= 0")
    return float(value)


def rate(name, value):
    """`value` as a float in `[0, 1)` (dropout rates)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name}={value!r}: must be in [0, 1)")
    return float(value)


def divisible(name, value, divisor_name, divisor):
    """Checks `value % divisor == 0` (e.g. `hidden_dim` by `num_heads`)."""
    if value % divisor:
        raise ValueError(f"{name}={value} is not divisible by {divisor_name}={divisor}")
    return value


def no_unknown_kwargs(owner, kwargs, allowed=LAYER_KWARGS):
    """Raises `TypeError` naming the first keyword argument `owner` does not take (a misspelt one)."""
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}")
