"""Several devices through Keras' distribution API (JAX) and tf.distribute (TF), on two virtual CPUs."""

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMON = textwrap.dedent(
    """
    import numpy as np, keras, keras_fame
    from keras_fame.data import TrainingBatches, leave_one_out
    from keras_fame.data.synthetic import planted_facets
    from keras_fame.evaluation import evaluate_model

    data, _ = planted_facets(num_users=240, seed=0)
    split = leave_one_out(data, max_len=12)
    x, y = split.train_inputs[:64], split.train_targets[:64]

    def build():
        model = keras_fame.FAME(data.num_items, hidden_dim=16, num_heads=2, num_experts=2, max_len=12, dropout=0.0)
        model.compile()
        return model

    keras.utils.set_random_seed(0)
    reference = build()
    reference.save_weights("{weights}")
    single_loss = float(reference.test_on_batch(x, y))
    half_losses = [float(reference.test_on_batch(x[:32], y[:32])), float(reference.test_on_batch(x[32:], y[32:]))]
    untrained = evaluate_model(reference, split.validation)["ndcg@10"]

    def fit_and_score(model):
        model.fit(TrainingBatches(split.train_inputs, split.train_targets, 64, seed=0), epochs=3, verbose=0)
        return evaluate_model(model, split.validation)["ndcg@10"]
    """
)

JAX_SCRIPT = COMMON + textwrap.dedent(
    """
    from keras_fame.distribution import model_parallel

    devices = keras.distribution.list_devices("cpu")
    assert len(devices) == 2, devices
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    model = build()
    model.load_weights("{weights}")
    assert abs(float(model.test_on_batch(x, y)) - single_loss) < 1e-4
    assert fit_and_score(model) > untrained + 0.005

    keras.distribution.set_distribution(model_parallel(devices, model_devices=2))
    model = build()
    model.load_weights("{weights}")
    spec = model.item_embedding.item_embeddings.value.sharding.spec
    assert tuple(spec) == (None, "model"), spec
    assert abs(float(model.test_on_batch(x, y)) - single_loss) < 1e-4
    assert fit_and_score(model) > untrained + 0.005
    print("DIST-OK")
    """
)

TF_SCRIPT = textwrap.dedent(
    """
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    """
) + COMMON + textwrap.dedent(
    """
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = build()
        model.load_weights("{weights}")
    # Each replica averages over its half of the batch; Keras averages the replicas.
    mirrored = model.evaluate(x, y, batch_size=64, verbose=0)
    assert abs(mirrored - np.mean(half_losses)) < 1e-4, (mirrored, half_losses, single_loss)
    assert fit_and_score(model) > untrained + 0.005
    print("DIST-OK")
    """
)


def _run(script, backend, tmp_path, extra_env=None):
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=ROOT, **(extra_env or {}))
    code = script.replace("{weights}", str(tmp_path / "start.weights.h5"))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and "DIST-OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-4000:]


def test_jax_data_parallel_and_item_table_model_parallel_on_two_devices(tmp_path):
    pytest.importorskip("jax")
    flags = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    _run(JAX_SCRIPT, "jax", tmp_path, {"XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"})


def test_tensorflow_mirrored_strategy_on_two_logical_cpus(tmp_path):
    pytest.importorskip("tensorflow")
    _run(TF_SCRIPT, "tensorflow", tmp_path)
