"""Sampled softmax against the full one at equal epochs: how much validation quality do the negatives keep?

    python benchmarks/negatives.py run --seeds 0 1 2                # every loss below, each seed; resumable
    python benchmarks/negatives.py table                            # mean ± std and the ratio to the full softmax

SASRec on Toys (d = 64, 2 blocks, 2 heads, dropout 0.3, batch 256, Adam 1e-3, the paper's layout) trained
for `--epochs` epochs (no early stop) with: the full softmax; 256 uniform negatives; mixed negatives (the
batch's own targets plus 256 uniform draws, log-Q corrected by the mixture, `keras_fame.data.SampledBatches`).
Recorded per run: the best validation NDCG@10 within the epochs (full ranking, history excluded) and every
epoch's value. Each run is written to `results/negatives/<loss>-seed<seed>.json` (with its provenance) as it
finishes; a rerun skips finished runs and continues an interrupted one from its last finished epoch
(`runs/negatives/<loss>-seed<seed>`, `fit_with_early_stopping(checkpoint_dir=)`).
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

OUT = os.path.join(ROOT, "results", "negatives")
CHECKPOINTS = os.path.join(ROOT, "runs", "negatives")  # git-ignored; a finished run removes its folder
LOSSES = {"full": (None, "uniform"), "uniform256": (256, "uniform"), "mixed256": (256, "mixed")}


def run(loss, seed, epochs, data_dir=None, out_dir=OUT, checkpoint_root=CHECKPOINTS):
    import keras

    import keras_fame
    from keras_fame.data.registry import find_sequence_file
    from keras_fame.experiments import provenance, write_json_atomic
    from keras_fame.training import fit_with_early_stopping

    path = os.path.join(out_dir, f"{loss}-seed{seed}.json")
    if os.path.isfile(path):
        print(f"skip {path}: exists", flush=True)
        return path
    data = keras_fame.read_sequences(find_sequence_file("toys", data_dir))
    split = keras_fame.leave_one_out(data, max_len=50)
    keras.utils.set_random_seed(seed)
    model = keras_fame.SASRec(data.num_items, hidden_dim=64, num_heads=2, max_len=50, dropout=0.3)
    negatives, sampler = LOSSES[loss]
    report = fit_with_early_stopping(model, split, epochs=epochs, patience=epochs, seed=seed, verbose=0,
                                     negatives=negatives, sampler=sampler,
                                     checkpoint_dir=os.path.join(checkpoint_root, f"{loss}-seed{seed}"))
    row = {
        "loss": loss, "seed": seed, "epochs": epochs, "negatives": negatives, "sampler": sampler,
        "best_validation_ndcg@10": report["best_validation"]["ndcg@10"], "best_epoch": report["best_epoch"],
        "validation_ndcg@10": [entry["ndcg@10"] for entry in report["validation_history"]],
        "seconds_per_epoch": report["seconds_per_epoch"], **provenance(),
    }
    write_json_atomic(path, row)
    print(f"{loss} seed {seed}: best validation NDCG@10 {row['best_validation_ndcg@10']:.4f}", flush=True)
    return path


def table(out_dir=OUT):
    """Markdown: best validation NDCG@10 per loss, mean ± std over seeds, its ratio to the full softmax, s/epoch.

    The seconds are the median training epoch (evaluation excluded) over the
    loss's runs; runs share the machine with other work, so only their
    order of magnitude is comparable.
    """
    rows, seconds = {}, {}
    for name in sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []:
        if name.endswith(".json"):
            with open(os.path.join(out_dir, name)) as f:
                row = json.load(f)
            rows.setdefault(row["loss"], {})[row["seed"]] = row["best_validation_ndcg@10"]
            seconds.setdefault(row["loss"], []).extend(row["seconds_per_epoch"])
    if "full" not in rows:
        return ""
    lines = ["| loss | seeds | best validation NDCG@10 | ratio to the full softmax (paired by seed) | median s/epoch |",
             "|---|---|---|---|---|"]
    for loss in LOSSES:
        if loss not in rows:
            continue
        seeds = sorted(rows[loss])
        values = np.array([rows[loss][s] for s in seeds])
        paired = [s for s in seeds if s in rows["full"]]
        ratios = np.array([rows[loss][s] / rows["full"][s] for s in paired])
        spread = f" ± {values.std(ddof=1):.4f}" if len(values) > 1 else " (1 seed)"
        ratio = f"{ratios.mean():.3f}" + (f" ± {ratios.std(ddof=1):.3f}" if len(ratios) > 1 else "")
        lines.append(f"| {loss} | {','.join(map(str, seeds))} | {values.mean():.4f}{spread} | {ratio} | "
                     f"{np.median(seconds[loss]):.0f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run")
    go.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    go.add_argument("--losses", nargs="+", choices=sorted(LOSSES), default=list(LOSSES))
    go.add_argument("--epochs", type=int, default=10)
    go.add_argument("--data-dir")
    sub.add_parser("table")
    args = parser.parse_args(argv)
    if args.command == "run":
        os.makedirs(OUT, exist_ok=True)
        for seed in args.seeds:
            for loss in args.losses:
                run(loss, seed, args.epochs, args.data_dir)
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
