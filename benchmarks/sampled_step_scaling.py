"""FAME's sampled-softmax training step against the catalogue size (same batch, same number of candidates).

    python benchmarks/sampled_step_scaling.py --items 10000 100000 1000000 --out results/sampled_step_scaling.json

For each catalogue size: a fresh FAME (d = 64, H = 2, N = 4, 2 blocks, max_len 50) wrapped in
`SampledSoftmaxTrainer` with each of `--optimizers` (`adam`: Keras' Adam; `lazy_adam`:
`keras_fame.optimizers.LazyAdam`, which updates only the table rows a step's gradient names), one batch
of `--batch` random histories of length 50 and `--candidates` uniform negatives; `--warmup` steps each
(tracing), then `--steps` rounds in which every (optimizer, catalogue) pair runs one `train_on_batch` in
turn, and the median wall time of each pair's calls. FAME's projection `W_f` sits on the query side
(`keras_fame.models.retrieval`), so a step reads only the rows it scores; with Adam what still grows with
the catalogue is the optimizer's dense update of the `[V, d]` item table (its moments decay on every
row), which `LazyAdam` removes. `--facets 0 2` also times FAME with 2 item facets (random labels, 100
per facet, fused by slices): the step then fuses only the rows it reads (`ItemEmbedding.rows`), so the
facets should not make it grow with the catalogue either. Prints the table and, per optimizer, the ratio of the largest to the
smallest catalogue's step; times are ratios within one run (another process on the machine changes
absolute seconds; taking turns spreads its effect over every pair).
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_fame  # noqa: E402
from keras_fame.data.sampled_batches import SampledBatches  # noqa: E402
from keras_fame.experiments import provenance, write_json_atomic  # noqa: E402
from keras_fame.losses import SampledSoftmaxCrossEntropy  # noqa: E402
from keras_fame.optimizers import OPTIMIZERS, make_optimizer  # noqa: E402
from keras_fame.training import SampledSoftmaxTrainer  # noqa: E402


class _OneBatch:
    """The `TrainingBatches` interface `SampledBatches` reads, over one fixed batch."""

    def __init__(self, inputs, targets):
        self.inputs, self.targets, self.epoch = inputs, targets, 0

    def __len__(self):
        return 1

    def __getitem__(self, index):
        return self.inputs, self.targets


def training_step(num_items, batch, candidates, warmup, optimizer="adam", seed=0, facets=0):
    """A warmed-up `() -> None` that runs one sampled-softmax step of a fresh FAME over `num_items` items.

    `facets > 0`: the FAME holds that many item facets, 100 random labels each.
    """
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, num_items + 1, size=(batch, 51)).astype("int32")
    inputs, targets = ids[:, :-1], ids[:, 1:]
    data = SampledBatches(_OneBatch(inputs, targets), num_items, num_negatives=candidates, sampler="uniform",
                          item_counts=np.ones(num_items + 1))
    x, y = data[0]
    item_facets = [rng.integers(0, 101, num_items + 1).astype("int32") for _ in range(facets)] or None
    model = keras_fame.FAME(num_items, hidden_dim=64, num_heads=2, num_experts=4, max_len=50, item_facets=item_facets)
    trainer = SampledSoftmaxTrainer(model)
    trainer.compile(optimizer=make_optimizer(optimizer, 1e-3), loss=SampledSoftmaxCrossEntropy())
    for _ in range(warmup):
        trainer.train_on_batch(x, y)
    return lambda: trainer.train_on_batch(x, y)


def interleaved_median_seconds(steps, rounds):
    """Median seconds of each step function, timed in `rounds` rounds of one call each, in turn.

    Taking turns spreads a change in the machine's load (another process) over every function alike,
    so the ratios of the medians hold under load where back-to-back blocks would not.
    """
    times = [[] for _ in steps]
    for _ in range(rounds):
        for step, record in zip(steps, times):
            start = time.perf_counter()
            step()
            record.append(time.perf_counter() - start)
    return [statistics.median(record) for record in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--candidates", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--optimizers", nargs="+", choices=OPTIMIZERS, default=["adam", "lazy_adam"])
    parser.add_argument("--facets", type=int, nargs="+", default=[0],
                        help="numbers of item facets to time (0: none); each a divisor of d = 64")
    parser.add_argument("--out", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if min(args.items) < 2 or min(args.batch, args.candidates, args.steps) < 1 or args.warmup < 0:
        parser.error("--items >= 2, --batch/--candidates/--steps >= 1 and --warmup >= 0")
    if any(k < 0 or 64 % max(k, 1) for k in args.facets):
        parser.error(f"--facets {args.facets}: each must be 0 or a divisor of d = 64")
    combos = [(optimizer, facets, num_items) for optimizer in args.optimizers for facets in args.facets
              for num_items in args.items]
    steps = [training_step(num_items, args.batch, args.candidates, args.warmup, optimizer, facets=facets)
             for optimizer, facets, num_items in combos]
    medians = interleaved_median_seconds(steps, args.steps)
    rows = [{"optimizer": optimizer, "facets": facets, "num_items": num_items, "median_step_seconds": seconds}
            for (optimizer, facets, num_items), seconds in zip(combos, medians)]
    ratios = {}
    for optimizer in args.optimizers:
        for facets in args.facets:
            name = optimizer if facets == 0 else f"{optimizer}, {facets} facets"
            mine = [row for row in rows if row["optimizer"] == optimizer and row["facets"] == facets]
            for row in mine:
                print(f"{name:>20} {row['num_items']:>9} items: {row['median_step_seconds'] * 1e3:8.1f} ms per step")
            ratios[name] = mine[-1]["median_step_seconds"] / mine[0]["median_step_seconds"]
            print(f"{name}: step({mine[-1]['num_items']}) / step({mine[0]['num_items']}) = {ratios[name]:.2f}")
    if args.out:
        write_json_atomic(args.out, {**provenance(sys.argv if argv is None else ["sampled_step_scaling.py", *argv]),
                                     "settings": {k: v for k, v in vars(args).items() if k != "out"},
                                     "backend": keras.backend.backend(), "rows": rows,
                                     "ratio_largest_to_smallest": ratios})
    return 0


if __name__ == "__main__":
    sys.exit(main())
