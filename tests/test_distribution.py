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
    from keras_fame.distribution import distributed

    devices = keras.distribution.list_devices("cpu")
    assert len(devices) == {devices}, devices
    with distributed("data"):
        model = build()
        model.load_weights("{weights}")
        assert abs(float(model.test_on_batch(x, y)) - single_loss) < 1e-4
        assert fit_and_score(model) > untrained + 0.005

    for model_devices in sorted({{2, {devices}}}):
        with distributed("model", model_devices):
            model = keras_fame.FAME(data.num_items, hidden_dim=16, num_heads=2, num_experts=2, max_len=12, dropout=0.0,
                                    row_multiple=model_devices)
            model.compile()
            # The same start: the single-device weights, the item table padded to whole shards.
            weights = reference.get_weights()
            i = [w.path for w in model.weights].index(model.item_embedding.item_embeddings.path)
            weights[i] = np.pad(weights[i], [(0, model.item_embedding.table_rows - len(weights[i])), (0, 0)])
            model.set_weights(weights)
            table = model.item_embedding.item_embeddings.value
            assert tuple(table.sharding.spec) == ("model", None), table.sharding.spec
            assert {{s.data.shape[0] for s in table.addressable_shards}} == {{model.item_embedding.table_rows // model_devices}}
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


def _run(script, backend, tmp_path, extra_env=None, devices=2):
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=ROOT, **(extra_env or {}))
    code = script.replace("{weights}", str(tmp_path / "start.weights.h5")).replace("{devices}", str(devices))
    code = code.replace("{{", "{").replace("}}", "}")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and "DIST-OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-4000:]


def _jax_env(devices):
    flags = (os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}").strip()
    return {"XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}


@pytest.mark.parametrize("devices", [2, 4])
def test_jax_data_parallel_and_row_sharded_item_tables(tmp_path, devices):
    pytest.importorskip("jax")
    _run(JAX_SCRIPT, "jax", tmp_path, _jax_env(devices), devices=devices)


CLI_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from keras_fame.data import write_sequences
    from keras_fame.data.synthetic import planted_facets
    from keras_fame.experiments import cli

    data, _ = planted_facets(num_users=160, max_length=10, seed=0)
    write_sequences("{tmp}/toys/Toys_and_Games.txt", data)
    # No dropout: replicas draw their own dropout masks (a tf.distribute strategy does), which would change the
    # training like another seed; without it only the order of float reductions differs.
    common = ["--data-dir", "{tmp}", "--hidden-dim", "8", "--heads", "2", "--experts", "2", "--max-len", "10",
              "--epochs", "2", "--fame-epochs", "1", "--batch-size", "64", "--text-init", "none", "--verbose", "0",
              "--dropout", "0", "--fame-dropout", "0"]
    runs = {{
        "single": [], "data": ["--distribute", "data"], "model": ["--distribute", "model", "--model-devices", "2"],
        "sampled": ["--sampled-softmax", "16"], "sampled-data": ["--sampled-softmax", "16", "--distribute", "data"],
    }}
    if "{backend}" == "tensorflow":  # model parallelism and the sampled softmax's shared candidates need JAX
        runs = {{k: v for k, v in runs.items() if k in ("single", "data")}}
    out = {{}}
    for name, flags in runs.items():
        assert cli.main("toys", [*common, "--output-dir", f"{tmp}/{{name}}", *flags]) == 0, name
        out[name] = json.load(open(f"{tmp}/{{name}}/results.json"))
    for name, result in out.items():
        twin = out["sampled" if name.startswith("sampled") else "single"]
        for stage in ("sasrec", "fame"):
            got, want = result[stage]["test"]["exclude_history"], twin[stage]["test"]["exclude_history"]
            for metric in ("ndcg@10", "hr@10"):
                assert abs(got[metric] - want[metric]) <= 2.0 / got["users"], (name, stage, metric, got, want)
    assert out["data"]["config"]["distribute"] == "data"
    if "{backend}" == "jax":
        assert out["model"]["config"]["distribute"] == "model" and out["model"]["config"]["model_devices"] == 2
    else:  # refused with a message, exit status 2 (a bad flag combination raises SystemExit(2) from argparse)
        for flags in (["--distribute", "model", "--model-devices", "2"], ["--distribute", "data", "--sampled-softmax", "16"]):
            try:
                code = cli.main("toys", [*common, "--output-dir", "{tmp}/refused", *flags])
            except SystemExit as exit:
                code = exit.code
            assert code == 2, flags
    print("DIST-OK")
    """
)


def test_the_command_line_trains_on_several_jax_devices_as_on_one(tmp_path):
    pytest.importorskip("jax")
    (tmp_path / "toys").mkdir()
    script = CLI_SCRIPT.replace("{tmp}", str(tmp_path)).replace("{backend}", "jax")
    _run(script, "jax", tmp_path, _jax_env(4), devices=4)


def test_the_command_line_trains_under_a_mirrored_strategy(tmp_path):
    pytest.importorskip("tensorflow")
    (tmp_path / "toys").mkdir()
    logical = textwrap.dedent(
        """
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        """
    )
    _run(logical + CLI_SCRIPT.replace("{tmp}", str(tmp_path)).replace("{backend}", "tensorflow"), "tensorflow", tmp_path)


def test_tensorflow_mirrored_strategy_on_two_logical_cpus(tmp_path):
    pytest.importorskip("tensorflow")
    _run(TF_SCRIPT, "tensorflow", tmp_path)


AUXILIARY_SCRIPT = textwrap.dedent(
    """
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np, keras, keras_fame
    from keras_fame.losses import MaskedSoftmaxCrossEntropy
    from keras_fame.training import AllPositionsTrainer

    rng = np.random.default_rng(0)
    x = rng.integers(1, 41, size=(64, 8)).astype("int32")
    y = np.roll(x, -1, axis=1)
    facets = [rng.integers(0, 5, 41).astype("int32"), rng.integers(0, 7, 41).astype("int32")]

    def build():
        model = keras_fame.FAME(40, hidden_dim=16, num_heads=2, num_experts=2, max_len=8, dropout=0.0,
                                item_facets=facets)
        trainer = AllPositionsTrainer(model, facet_loss_weight=0.7, routing_loss_weight=0.5)
        trainer.compile(optimizer="sgd", loss=MaskedSoftmaxCrossEntropy())
        return model, trainer

    keras.utils.set_random_seed(0)
    reference, trainer = build()
    reference.save_weights("{weights}")
    halves = [float(trainer.test_on_batch(x[:32], y[:32])), float(trainer.test_on_batch(x[32:], y[32:]))]
    with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
        model, trainer = build()
        model.load_weights("{weights}")
    mirrored = trainer.evaluate(x, y, batch_size=64, verbose=0)
    # Each replica's auxiliary terms count once: the mean of the halves, not the terms twice.
    assert abs(mirrored - np.mean(halves)) < 1e-4, (mirrored, halves)
    print("DIST-OK")
    """
)


def test_auxiliary_losses_count_once_under_a_mirrored_strategy(tmp_path):
    pytest.importorskip("tensorflow")
    _run(AUXILIARY_SCRIPT, "tensorflow", tmp_path)
