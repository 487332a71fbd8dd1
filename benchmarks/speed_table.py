"""One benchmark table: SASRec and FAME on Toys per backend, full vs sampled softmax, and a peer (RecBole).

    python benchmarks/speed_table.py run                     # every row below, then the table
    python benchmarks/speed_table.py run --rows tf-sasrec-full jax-sasrec-full
    python benchmarks/speed_table.py table                   # print the table from the stored rows
    python benchmarks/speed_table.py table --target 0.05     # time to another target, from the stored histories
    python benchmarks/speed_table.py one --backend jax --model fame --loss full   # one row (a child process)

Besides the backend x model x loss grid, two options get rows of their own:
`every-prefix` (one training row per (prefix, next item) pair, the loss at
the newest position only: `fit_with_early_stopping(every_prefix=True)`, the
layout RecBole's SASRec also trains on) and `bf16` (mixed precision:
bf16 compute, float32 variables and scores).

Each row runs in its own process (its backend chosen by `KERAS_BACKEND`, its
peak memory its own) and trains from scratch with `fit_with_early_stopping`
on all Toys training sequences (batch 256, Adam 1e-3, d = 64, 2 blocks,
max_len 50; FAME H = 2, N = 4), validating on every user after every epoch
(full ranking, history excluded), until validation NDCG@10 reaches
`--target` or `--max-epochs` pass. Recorded per row:

- s/epoch: the median training epoch after the first (the first holds the
  compilation), and training sequences per second from it (an epoch covers
  every user's training pairs in each layout, so the rates compare);
- time to target: wall seconds from the start of `fit` (compilation and
  every validation pass included) to the end of the epoch whose validation
  NDCG@10 first reaches the target;
- evaluation: one full-ranking pass over all users (validation set), timed
  after training;
- peak RSS of the process (`ru_maxrss`).

The peer row runs RecBole's SASRec (its shipped defaults: every-prefix
training, GELU FFN of width 4d, dropout 0.5, CE loss) on the same
sequences with the same split (leave-one-out, full ranking over all items,
history excluded) and the same target, in a separate virtual environment
that `python benchmarks/recbole_peer.py setup` builds from the package
registry. Seconds differ by machine; the README reports the ratio of time to
quality on the same machine, which is the comparable number.

Rows are stored in `results/speed_table/<row>.json`; a rerun skips stored
rows (`--force` reruns them).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "results", "speed_table")
# Each row's own output (per-epoch lines, RecBole's progress) goes to a log here, not into the table.
LOGS = os.path.join(ROOT, "runs", "speed_table")
# name -> (backend, model, loss, options); options are `one`'s flags.
ROWS = {
    "tf-sasrec-full": ("tensorflow", "sasrec", "full", ()),
    "tf-fame-full": ("tensorflow", "fame", "full", ()),
    "tf-sasrec-sampled": ("tensorflow", "sasrec", "sampled", ()),
    "tf-fame-sampled": ("tensorflow", "fame", "sampled", ()),
    "tf-sasrec-every-prefix": ("tensorflow", "sasrec", "full", ("--every-prefix",)),
    "tf-fame-every-prefix": ("tensorflow", "fame", "full", ("--every-prefix",)),
    "tf-sasrec-full-bf16": ("tensorflow", "sasrec", "full", ("--mixed-precision",)),
    "tf-fame-full-bf16": ("tensorflow", "fame", "full", ("--mixed-precision",)),
    "jax-sasrec-full": ("jax", "sasrec", "full", ()),
    "jax-fame-full": ("jax", "fame", "full", ()),
    "recbole-sasrec": ("torch", "recbole", "full", ()),
}


def peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


def time_to_target(history, target, metric="ndcg@10"):
    """`(epoch, seconds)` of the first entry of `history` (dicts with `epoch`, `seconds`, metrics) reaching `target`."""
    for entry in history:
        if entry[metric] >= target:
            return entry["epoch"], entry["seconds"]
    return None, None


def run_one(backend, model_name, loss, target, max_epochs, data_dir=None, negatives=256, mixed_precision=False,
            every_prefix=False):
    """Trains one configuration in this process and returns its row (the backend must already be set)."""
    import keras

    import keras_fame
    from keras_fame.data.registry import find_sequence_file
    from keras_fame.evaluation import evaluate_model
    from keras_fame.experiments import machine_description
    from keras_fame.training import fit_with_early_stopping
    from keras_fame.utils import dtype_policy

    if keras.backend.backend() != backend:
        raise RuntimeError(f"KERAS_BACKEND is {keras.backend.backend()}, the row wants {backend}")
    data = keras_fame.read_sequences(find_sequence_file("toys", data_dir))
    split = keras_fame.leave_one_out(data, max_len=50)
    keras.utils.set_random_seed(0)
    with dtype_policy("mixed_bfloat16" if mixed_precision else None):
        if model_name == "sasrec":
            model = keras_fame.SASRec(data.num_items, hidden_dim=64, num_heads=2, max_len=50, dropout=0.3)
        else:
            model = keras_fame.FAME(data.num_items, hidden_dim=64, heads=2, experts=4, max_len=50, dropout=0.3)
    start = time.perf_counter()
    marks = []

    class StopAtTarget(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            marks.append(time.perf_counter() - start)
            if (logs or {}).get("val_ndcg@10", 0.0) >= target:
                self.model.stop_training = True

    report = fit_with_early_stopping(
        model, split, epochs=max_epochs, batch_size=256, patience=max_epochs, verbose=0,
        negatives=negatives if loss == "sampled" else None, every_prefix=every_prefix, callbacks=[StopAtTarget()],
    )
    history = [
        {"epoch": entry["epoch"], "seconds": marks[entry["epoch"] - 1], "ndcg@10": entry["ndcg@10"]}
        for entry in report["validation_history"]
    ]
    epochs = report["seconds_per_epoch"]
    steady = statistics.median(epochs[1:]) if len(epochs) > 1 else epochs[0]
    eval_start = time.perf_counter()
    evaluate_model(model, split.validation)
    eval_seconds = time.perf_counter() - eval_start
    epoch, seconds = time_to_target(history, target)
    described = loss + (f" ({negatives} uniform negatives)" if loss == "sampled" else "")
    described += ", every prefix" if every_prefix else ""
    described += ", bf16" if mixed_precision else ""
    return {
        "backend": backend, "model": model_name, "loss": described,
        "mixed_precision": mixed_precision, "every_prefix": every_prefix,
        "train_rows": int(split.num_train_positions if every_prefix else len(split.train_inputs)),
        "train_sequences": int(len(split.train_inputs)), "train_positions": int(split.num_train_positions),
        "first_epoch_seconds": epochs[0], "seconds_per_epoch": steady,
        "sequences_per_second": len(split.train_inputs) / steady,
        "target": target, "target_epoch": epoch, "time_to_target_seconds": seconds,
        "best_validation_ndcg@10": max(entry["ndcg@10"] for entry in history),
        "eval_all_users_seconds": eval_seconds, "eval_users": int(len(split.validation.inputs)),
        "peak_rss_gb": peak_rss_gb(), "history": history, "machine": machine_description(),
    }


def retarget(rows, target):
    """The rows with time to target recomputed from their stored validation history for another `target`."""
    out = {}
    for name, row in rows.items():
        epoch, seconds = time_to_target(row["history"], target)
        out[name] = {**row, "target": target, "target_epoch": epoch, "time_to_target_seconds": seconds}
    return out


def machine_key(row):
    """What tells two rows' machines apart: the CPU model (recorded since session 11), the OS build, the cores."""
    machine = row.get("machine") or {}
    return (machine.get("cpu", "CPU model not recorded"), machine.get("platform", "?"), machine.get("cpu_count", "?"))


def format_table(rows):
    """The markdown table; a `machine` column tags each row, and seconds compare only within one tag."""
    target = next(iter(rows.values()))["target"] if rows else "target"
    machines = {}
    for row in rows.values():
        machines.setdefault(machine_key(row), chr(ord("A") + len(machines)))
    lines = [
        f"| row | backend | model | loss | s/epoch | sequences/s | time to val NDCG@10 ≥ {target} (epoch) | "
        "eval, all users (s) | peak RSS (GB) | machine |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        reach = (
            f"{row['time_to_target_seconds']:.0f} s ({row['target_epoch']})" if row["time_to_target_seconds"] is not None
            else f"not in {len(row['history'])} epochs (best {row['best_validation_ndcg@10']:.4f})"
        )
        lines.append(
            f"| {name} | {row['backend']} | {row['model']} | {row['loss']} | {row['seconds_per_epoch']:.1f} | "
            f"{row['sequences_per_second']:.0f} | {reach} | {row['eval_all_users_seconds']:.1f} | {row['peak_rss_gb']:.2f} "
            f"| {machines[machine_key(row)]} |"
        )
    lines.append("\nMachines: " + "; ".join(f"{tag} = {cpu}, {cores} cores, {build}" for (cpu, build, cores), tag in machines.items())
                 + (". Seconds compare only between rows of one machine." if len(machines) > 1 else "."))
    peer = rows.get("recbole-sasrec")
    for name in ("tf-sasrec-full", "tf-sasrec-every-prefix"):
        ours = rows.get(name)
        same_machine = ours and peer and machine_key(ours) == machine_key(peer)
        if same_machine and ours["time_to_target_seconds"] and peer["time_to_target_seconds"]:
            lines.append(
                f"\nTime to validation NDCG@10 ≥ {ours['target']}: RecBole SASRec / keras-fame {name} = "
                f"{peer['time_to_target_seconds'] / ours['time_to_target_seconds']:.2f}x"
            )
    return "\n".join(lines)


def load_rows():
    rows = {}
    for name in ROWS:
        path = os.path.join(OUT, f"{name}.json")
        if os.path.isfile(path):
            with open(path) as f:
                rows[name] = json.load(f)
    return rows


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=list(ROWS))
    run.add_argument("--force", action="store_true")
    one = sub.add_parser("one")
    one.add_argument("--backend", choices=("tensorflow", "jax"), required=True)
    one.add_argument("--model", choices=("sasrec", "fame"), required=True)
    one.add_argument("--loss", choices=("full", "sampled"), default="full")
    one.add_argument("--mixed-precision", action="store_true")
    one.add_argument("--every-prefix", action="store_true")
    one.add_argument("--out")
    for p in (run, one):
        p.add_argument("--target", type=float, default=0.06, help="validation NDCG@10 to reach")
        p.add_argument("--max-epochs", type=int, default=15)
        p.add_argument("--data-dir")
    table = sub.add_parser("table")
    table.add_argument("--target", type=float, help="recompute time to target from the stored histories")
    return parser


def run_logged(command, env, log, tail=20):
    """Runs one row's command with its stdout and stderr in `log`; on failure prints the log's last lines."""
    with open(log, "w") as out:
        code = subprocess.call(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        with open(log, errors="replace") as f:
            lines = f.read().splitlines()[-tail:]
        print("\n".join(f"  | {line}" for line in lines), flush=True)
    return code


def main(argv=None):
    args = build_parser().parse_args(argv)

    if args.command == "one":
        row = run_one(args.backend, args.model, args.loss, args.target, args.max_epochs, args.data_dir,
                      mixed_precision=args.mixed_precision, every_prefix=args.every_prefix)
        from keras_fame.experiments import provenance

        # The row's own `machine` (measured in the run) wins over provenance's identical one.
        row = {**provenance(sys.argv if argv is None else ["speed_table.py", *argv]), **row}
        text = json.dumps(row, indent=2)
        if args.out:
            with open(args.out + ".tmp", "w") as f:
                f.write(text)
            os.replace(args.out + ".tmp", args.out)
        print(text)
        return 0
    if args.command == "run":
        os.makedirs(OUT, exist_ok=True)
        os.makedirs(LOGS, exist_ok=True)
        for name in args.rows:
            path = os.path.join(OUT, f"{name}.json")
            if os.path.isfile(path) and not args.force:
                print(f"skip {name}: {path} exists", flush=True)
                continue
            backend, model, loss, options = ROWS[name]
            if backend == "torch":
                command = [sys.executable, os.path.join(ROOT, "benchmarks", "recbole_peer.py"), "run",
                           "--target", str(args.target), "--max-epochs", str(args.max_epochs), "--out", path]
            else:
                command = [sys.executable, __file__, "one", "--backend", backend, "--model", model, "--loss", loss,
                           "--target", str(args.target), "--max-epochs", str(args.max_epochs), "--out", path, *options]
            if args.data_dir:
                command += ["--data-dir", args.data_dir]
            log = os.path.join(LOGS, f"{name}.log")
            print(f"row {name}: {' '.join(command[1:])}\n  log: {log}", flush=True)
            env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
            code = run_logged(command, env, log)
            print(f"  {'done' if code == 0 else f'failed ({code})'}", flush=True)
    rows = load_rows()
    if getattr(args, "target", None) is not None and args.command == "table":
        rows = retarget(rows, args.target)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
