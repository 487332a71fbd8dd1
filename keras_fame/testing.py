"""Shared checks for the layer tests (in the manner of keras-hub's `run_layer_test`)."""

import os
import tempfile

import keras
import numpy as np


def run_layer_test(layer_cls, init_kwargs, inputs, expected_output_shape, expected_num_trainable_weights, call_kwargs=None):
    """Config round-trip, eager and symbolic calls, one fit step, `.keras` save/load.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments.
        inputs: a tuple of numpy inputs (positional call arguments).
        expected_output_shape: shape of the (first) output.
        expected_num_trainable_weights: count after building.
        call_kwargs: extra non-tensor call arguments.
    """
    call_kwargs = call_kwargs or {}
    layer = layer_cls(**init_kwargs)

    # Config round-trip.
    config = layer.get_config()
    for key, value in init_kwargs.items():
        assert key in config, f"{key} missing from get_config()"
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config

    # Eager call.
    eager = layer(*inputs, **call_kwargs)
    first = eager[0] if isinstance(eager, (tuple, list)) else eager
    assert tuple(first.shape) == tuple(expected_output_shape)
    assert len(layer.trainable_weights) == expected_num_trainable_weights

    # Symbolic call, wrapped in a functional model.
    symbolic_inputs = [keras.Input(batch_shape=x.shape, dtype=str(x.dtype)) for x in inputs]
    out = layer_cls(**init_kwargs)(*symbolic_inputs, **call_kwargs)
    first_out = out[0] if isinstance(out, (tuple, list)) else out
    assert tuple(first_out.shape) == tuple(expected_output_shape)
    model = keras.Model(symbolic_inputs, first_out)

    # One fit step moves the weights and keeps them finite.
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [np.array(w) for w in model.trainable_weights]
    target = np.random.default_rng(0).normal(size=expected_output_shape).astype("float32")
    model.train_on_batch([*inputs], target)
    after = [np.array(w) for w in model.trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(before, after)), "fit did not change any weight"
    assert all(np.isfinite(a).all() for a in after)

    # `.keras` round-trip gives identical outputs.
    expected = np.asarray(model.predict_on_batch([*inputs]))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "layer.keras")
        model.save(path)
        restored = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(np.asarray(restored.predict_on_batch([*inputs])), expected, rtol=1e-6, atol=1e-6)
    return layer
