"""Training steps on 1, 2 and 4 virtual CPU devices: what the distribution layouts cost when the devices share cores.

    KERAS_BACKEND=jax        taskset -c 0 python benchmarks/virtual_devices.py --out results/virtual_devices_jax.json
    KERAS_BACKEND=tensorflow taskset -c 0 python benchmarks/virtual_devices.py --out results/virtual_devices_tensorflow.json

The process splits its CPU into 4 virtual devices (JAX: `--xla_force_host_platform_device_count`;
TensorFlow: logical CPU devices) and builds one `--model` per layout, each inside
`keras_fame.distribution.distributed` (the code path of `keras-fame train --distribute`):

- `1 device`: no distribution (the reference);
- `data, K devices`: JAX `keras.distribution.DataParallel` with K = 2 and 4; TensorFlow
  `tf.distribute.MirroredStrategy` with K = 4 only (a second strategy in the same process would reuse the
  first one's collective group keys, which TensorFlow refuses);
- `model, 2 x 2` (JAX only): `model_parallel(model_devices=2)` on 4 devices, the item tables sharded by rows.

All start from the same weights and train on the same batches (`--batch` rows of `--data`, full softmax);
after `--warmup` steps each, `--rounds` rounds in which every layout runs one `train_on_batch` in turn; the
median step per layout and its ratio to one device, and the loss of the first step (equal across layouts up
to float error: the layouts change where the work runs, not what it computes).

What the ratios mean: virtual devices are slices of the same cores (pin the process to one core to make that
exact), so no layout can be faster than one device here; the ratio is the overhead of splitting the batch,
replicating or sharding the weights and reducing the gradients. On real devices the work per device shrinks by
K besides; these rows say what the distribution costs, not what it gains.
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DEVICES = 4


def _virtual_devices(count):
    """Splits the CPU into `count` devices; must run before the backend initialises."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "jax":
        flag = f"--xla_force_host_platform_device_count={count}"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    else:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    return backend


def _data(name, data_dir, batch):
    import keras_fame
    from keras_fame.data.registry import find_sequence_file
    from keras_fame.data.synthetic import planted_facets

    if name == "toys":
        data = keras_fame.read_sequences(find_sequence_file("toys", data_dir))
    else:
        data, _ = planted_facets(num_users=max(2 * batch, 512), seed=0)
    split = keras_fame.leave_one_out(data, max_len=50)
    return data.num_items, split.train_inputs[:batch], split.train_targets[:batch]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("sasrec", "fame"), default="fame")
    parser.add_argument("--data", choices=("toys", "synthetic"), default="toys")
    parser.add_argument("--data-dir")
    parser.add_argument("--batch", type=int, default=256, help="rows per step (a multiple of 4)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.batch % 4:
        parser.error(f"--batch={args.batch}: must be a multiple of 4 (the batch is split over up to 4 devices)")
    backend = _virtual_devices(DEVICES)

    import keras
    import numpy as np

    import keras_fame
    from keras_fame.distribution import distributed
    from keras_fame.experiments import provenance, write_json_atomic

    num_items, x, y = _data(args.data, args.data_dir, args.batch)
    devices = keras.distribution.list_devices() if backend == "jax" else [f"/cpu:{i}" for i in range(DEVICES)]
    layouts = {"1 device": (None, 1, None)}
    # TensorFlow: one MirroredStrategy per process (a second one's collectives reuse the first one's group keys).
    layouts.update({f"data, {k} devices": ("data", 1, devices[:k]) for k in ((2, 4) if backend == "jax" else (4,))})
    if backend == "jax":
        layouts["model, 2 x 2"] = ("model", 2, devices[:4])

    def build(row_multiple):
        keras.utils.set_random_seed(0)
        size = dict(hidden_dim=64, max_len=50, row_multiple=row_multiple)
        if args.model == "fame":
            return keras_fame.FAME(num_items, num_heads=2, num_experts=4, **size)
        return keras_fame.SASRec(num_items, num_heads=2, **size)

    reference = build(1)
    models, first_loss = {}, {}
    for name, (mode, model_devices, layout_devices) in layouts.items():
        with distributed(mode, model_devices, layout_devices):
            model = build(model_devices)
            for target, source in zip(model.weights, reference.weights):  # the same start (spare rows stay 0)
                value = np.asarray(source)
                if tuple(target.shape) != value.shape:
                    value = np.concatenate([value, np.zeros((target.shape[0] - value.shape[0], *value.shape[1:]))])
                target.assign(value.astype(target.dtype))
            model.compile(optimizer=keras.optimizers.Adam(1e-3))
            first_loss[name] = float(model.train_on_batch(x, y))
        models[name] = model

    def step(name):
        mode, model_devices, layout_devices = layouts[name]
        # JAX shards each batch by the distribution in force; TensorFlow's model keeps its strategy.
        with distributed(mode if backend == "jax" else None, model_devices, layout_devices):
            start = time.perf_counter()
            models[name].train_on_batch(x, y)
            return time.perf_counter() - start

    for name in layouts:
        for _ in range(args.warmup):
            step(name)
    times = {name: [] for name in layouts}
    for _ in range(args.rounds):
        for name in layouts:
            times[name].append(step(name))
    median = {name: statistics.median(t) for name, t in times.items()}
    rows = [{"layout": name, "median_step_ms": round(1000 * median[name], 1),
             "ratio_to_one_device": round(median[name] / median["1 device"], 2),
             "first_step_loss": round(first_loss[name], 5)} for name in layouts]
    print(f"{backend}, {args.model}, batch {args.batch}, {DEVICES} virtual devices on "
          f"{len(os.sched_getaffinity(0))} core(s):")
    for row in rows:
        print(f"  {row['layout']:18s} {row['median_step_ms']:8.1f} ms  x{row['ratio_to_one_device']:.2f}  "
              f"first-step loss {row['first_step_loss']}")
    if args.out:
        write_json_atomic(args.out, {
            **provenance(sys.argv if argv is None else ["virtual_devices.py", *argv]),
            "backend": backend, "settings": vars(args), "cores": len(os.sched_getaffinity(0)), "rows": rows,
        })
    return rows


if __name__ == "__main__":
    main()
