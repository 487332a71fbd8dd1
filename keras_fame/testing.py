"""Shared checks for the layer tests (in the manner of keras-hub's `run_layer_test`)."""

import os
import tempfile

import keras
import numpy as np


def _outputs(value):
    return list(value) if isinstance(value, (tuple, list)) else [value]


def run_layer_test(
    layer_cls,
    init_kwargs,
    inputs,
    expected_output_shape,
    expected_num_trainable_weights,
    call_kwargs=None,
    mixed_precision=True,
):
    """Config round-trip, eager and symbolic calls of every output, one fit step, `.keras` save/load, bf16.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments.
        inputs: a tuple of numpy inputs (positional call arguments).
        expected_output_shape: the shape of the output, or a list of
            shapes, one per output of a layer that returns a tuple.
        expected_num_trainable_weights: count after building; 0 skips the
            fit step (nothing to train).
        call_kwargs: extra non-tensor call arguments. Defaults to None.
        mixed_precision: also run the layer under the `mixed_bfloat16`
            dtype policy: its variables stay float32, each output has the
            dtype its symbolic spec gives, and float outputs are within
            bf16 rounding of the float32 layer's (same weights). Defaults
            to True.

    Returns:
        The eagerly called layer.
    """
    call_kwargs = call_kwargs or {}
    shapes = expected_output_shape if isinstance(expected_output_shape, list) else [expected_output_shape]
    layer = layer_cls(**init_kwargs)

    # Config round-trip.
    config = layer.get_config()
    for key in init_kwargs:
        assert key in config, f"{key} missing from get_config()"
    assert layer_cls.from_config(config).get_config() == config

    # Eager call: every output's shape.
    eager = _outputs(layer(*inputs, **call_kwargs))
    assert [tuple(o.shape) for o in eager] == [tuple(s) for s in shapes]
    assert len(layer.trainable_weights) == expected_num_trainable_weights

    # Symbolic call, wrapped in a functional model: the same shapes and dtypes as the eager call.
    symbolic_inputs = [keras.Input(batch_shape=x.shape, dtype=str(x.dtype)) for x in inputs]
    symbolic = _outputs(layer_cls(**init_kwargs)(*symbolic_inputs, **call_kwargs))
    assert [tuple(o.shape) for o in symbolic] == [tuple(s) for s in shapes]
    assert [keras.backend.standardize_dtype(o.dtype) for o in symbolic] == [
        keras.backend.standardize_dtype(o.dtype) for o in eager
    ]
    model = keras.Model(symbolic_inputs, symbolic)

    # One fit step (on the first output) moves the weights and keeps them finite.
    if expected_num_trainable_weights:
        trainer = keras.Model(symbolic_inputs, symbolic[0])
        trainer.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        before = [np.array(w) for w in trainer.trainable_weights]
        target = np.random.default_rng(0).normal(size=shapes[0]).astype("float32")
        trainer.train_on_batch([*inputs], target)
        after = [np.array(w) for w in trainer.trainable_weights]
        assert any(not np.allclose(a, b) for a, b in zip(before, after)), "fit did not change any weight"
        assert all(np.isfinite(a).all() for a in after)

    # `.keras` round-trip gives identical outputs, every one of them.
    expected = [np.asarray(o) for o in _outputs(model.predict_on_batch([*inputs]))]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "layer.keras")
        model.save(path)
        restored = keras.saving.load_model(path, safe_mode=True)
    for got, want in zip(_outputs(restored.predict_on_batch([*inputs])), expected):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)

    if mixed_precision:
        specs = _outputs(layer_cls(**init_kwargs, dtype="mixed_bfloat16")(*symbolic_inputs, **call_kwargs))
        mixed = layer_cls(**init_kwargs, dtype="mixed_bfloat16")
        mixed(*inputs, **call_kwargs)  # builds it
        mixed.set_weights(layer.get_weights())
        assert all(keras.backend.standardize_dtype(v.dtype) in ("float32", "int32") for v in mixed.weights), [
            (v.path, v.dtype) for v in mixed.weights if v.dtype not in ("float32", "int32")
        ]
        outputs = _outputs(mixed(*inputs, **call_kwargs))
        for i, (got, want) in enumerate(zip(outputs, eager)):
            assert keras.backend.standardize_dtype(got.dtype) == keras.backend.standardize_dtype(specs[i].dtype), i
            got, want = np.asarray(keras.ops.convert_to_numpy(got)), np.asarray(want)
            if want.dtype.kind == "f":
                scale = max(1.0, float(np.abs(want).max()))
                np.testing.assert_allclose(got.astype("float32"), want, rtol=0.05, atol=0.05 * scale)
            else:
                np.testing.assert_array_equal(got, want)
    return layer
