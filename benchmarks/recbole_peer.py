"""The peer row of `benchmarks/speed_table.py`: RecBole's SASRec on the same Toys sequences, in its own venv.

    python benchmarks/recbole_peer.py setup          # builds .venv-recbole from the package registry (~3 GB: torch)
    python benchmarks/recbole_peer.py run --target 0.06 --out results/speed_table/recbole-sasrec.json

RecBole (https://recbole.io) is a PyTorch library; it is installed into a
separate virtual environment (`.venv-recbole`, git-ignored) from the pinned
`benchmarks/recbole-requirements.txt`, so it never touches the project's
environment. `run` resolves the data file with the project's registry, then
re-runs itself under that environment's Python (`_train`), which:

1. writes the sequences as a RecBole atomic file (`user_id`, `item_id`, and
   the position in the user's sequence as `timestamp`, so RecBole's
   time-ordered leave-one-out split (`LS: valid_and_test`, `order: TO`) is
   exactly ours: last item test, second-last validation, the rest training);
2. trains RecBole's `SASRec` with its shipped defaults (every prefix as a
   training example, GELU FFN of width 256, dropout 0.5, CE over all items)
   and our batch size, learning rate and `max_len` (256, 1e-3, 50), validating
   every epoch with full ranking (RecBole masks the user's training items:
   our `exclude_history` protocol) until validation NDCG@10 reaches the
   target or `--max-epochs` pass;
3. writes the same row fields as `speed_table.py one`.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv-recbole")
REQUIREMENTS = os.path.join(ROOT, "benchmarks", "recbole-requirements.txt")


def write_atomic_file(sequence_file, folder, name="toys"):
    """Writes `<folder>/<name>/<name>.inter` from a `user item item ...` file; returns (users, items, events)."""
    os.makedirs(os.path.join(folder, name), exist_ok=True)
    users, items, events = 0, set(), 0
    with open(sequence_file) as source, open(os.path.join(folder, name, f"{name}.inter"), "w") as out:
        out.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for number, line in enumerate(source, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2 or not all(f.isdigit() for f in fields):
                raise ValueError(f"{sequence_file}:{number}: expected 'user item item ...' as integers")
            users += 1
            for position, item in enumerate(fields[1:]):
                out.write(f"{fields[0]}\t{item}\t{position}\n")
                items.add(item)
                events += 1
    return users, len(items), events


def _train(sequence_file, target, max_epochs, out, cpu_model, seed=0):
    """Runs inside `.venv-recbole`, in a temporary folder that is removed afterwards, even on failure.

    `cpu_model` comes from the parent process (`keras_fame.experiments.reporting.cpu_model`, which this
    venv, without keras, cannot import), so the peer's row gets the same machine tag as ours."""
    folder = tempfile.mkdtemp(prefix="recbole-")
    os.chdir(folder)  # RecBole writes its log/ and log_tensorboard/ folders into the working directory
    try:
        _train_in(folder, sequence_file, target, max_epochs, out, cpu_model, seed)
    finally:
        os.chdir(ROOT)
        shutil.rmtree(folder, ignore_errors=True)


def _train_in(folder, sequence_file, target, max_epochs, out, cpu_model, seed):
    import platform

    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    # The cores this process may run on (`taskset` pins a row to one core, as the speed table's own rows are),
    # not the machine's: more threads than cores makes torch's CPU kernels spin against each other.
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    write_atomic_file(sequence_file, folder)
    config = Config(model="SASRec", dataset="toys", config_dict={
        "data_path": folder, "checkpoint_dir": os.path.join(folder, "saved"), "use_gpu": False, "state": "WARNING",
        "show_progress": False, "seed": seed, "reproducibility": True, "worker": 0,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": 50, "train_neg_sample_args": None, "loss_type": "CE",
        "train_batch_size": 256, "eval_batch_size": 4096, "learning_rate": 0.001,
        "epochs": max_epochs, "stopping_step": max_epochs, "eval_step": 1,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["NDCG", "Hit"], "topk": [10, 20], "valid_metric": "NDCG@10",
    })
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    base = get_trainer(config["MODEL_TYPE"], config["model"])
    epoch_seconds = []

    class TimedTrainer(base):
        def _train_epoch(self, *args, **kwargs):
            begin = time.perf_counter()
            result = super()._train_epoch(*args, **kwargs)
            epoch_seconds.append(time.perf_counter() - begin)
            return result

    class Reached(Exception):
        pass

    trainer = TimedTrainer(config, model)
    history = []
    start = time.perf_counter()

    def on_validation(epoch_idx, valid_score):
        history.append({"epoch": epoch_idx + 1, "seconds": time.perf_counter() - start, "ndcg@10": float(valid_score)})
        print(f"epoch {epoch_idx + 1}: {history[-1]['seconds']:.0f} s, validation NDCG@10 {valid_score:.4f}", flush=True)
        if valid_score >= target:
            raise Reached

    try:
        trainer.fit(train_data, valid_data, saved=False, show_progress=False, callback_fn=on_validation)
    except Reached:
        pass
    eval_start = time.perf_counter()
    trainer.evaluate(valid_data, load_best_model=False, show_progress=False)
    eval_seconds = time.perf_counter() - eval_start
    reached = next((entry for entry in history if entry["ndcg@10"] >= target), None)
    steady = statistics.median(epoch_seconds[1:]) if len(epoch_seconds) > 1 else epoch_seconds[0]
    num_users = dataset.user_num - 1  # RecBole's id 0 is padding
    row = {
        "backend": f"torch {torch.__version__} (RecBole {__import__('recbole').__version__})", "model": "RecBole SASRec",
        "loss": "full (every prefix)", "mixed_precision": False,
        "train_sequences": int(num_users), "train_positions": int(len(train_data.dataset)),
        "first_epoch_seconds": epoch_seconds[0], "seconds_per_epoch": steady,
        "sequences_per_second": num_users / steady,
        "target": target, "target_epoch": reached and reached["epoch"],
        "time_to_target_seconds": reached and reached["seconds"],
        "best_validation_ndcg@10": max(entry["ndcg@10"] for entry in history),
        "eval_all_users_seconds": eval_seconds, "eval_users": int(num_users),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, "history": history,
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "cpu": cpu_model},
        "recbole_config": {k: config[k] for k in ("hidden_size", "inner_size", "n_layers", "n_heads", "hidden_dropout_prob",
                                                   "attn_dropout_prob", "hidden_act", "layer_norm_eps", "initializer_range")},
    }
    with open(out + ".tmp", "w") as f:
        json.dump(row, f, indent=2)
    os.replace(out + ".tmp", out)
    print(json.dumps({k: v for k, v in row.items() if k != "history"}, indent=2))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup")
    run = sub.add_parser("run")
    run.add_argument("--target", type=float, default=0.06)
    run.add_argument("--max-epochs", type=int, default=15)
    run.add_argument("--out", required=True)
    run.add_argument("--data-dir")
    train = sub.add_parser("_train")
    train.add_argument("--sequence-file", required=True)
    train.add_argument("--target", type=float, required=True)
    train.add_argument("--max-epochs", type=int, required=True)
    train.add_argument("--out", required=True)
    train.add_argument("--cpu-model", required=True)
    args = parser.parse_args(argv)
    python = os.path.join(VENV, "bin", "python")
    if args.command == "setup":
        if not os.path.exists(python):
            subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([python, "-m", "pip", "install", "--quiet", "-r", REQUIREMENTS])
        return 0
    if args.command == "_train":
        _train(os.path.abspath(args.sequence_file), args.target, args.max_epochs, os.path.abspath(args.out), args.cpu_model)
        return 0
    from keras_fame.data.registry import find_sequence_file
    from keras_fame.experiments.reporting import cpu_model

    if not os.path.exists(python):
        print(f"{VENV} is missing: run `python benchmarks/recbole_peer.py setup` first", file=sys.stderr)
        return 2
    sequence_file = find_sequence_file("toys", args.data_dir)
    if sequence_file is None:
        print("Toys_and_Games.txt not found (--data-dir or FAME_DATA_DIR)", file=sys.stderr)
        return 2
    code = subprocess.call([python, os.path.abspath(__file__), "_train", "--sequence-file", sequence_file,
                            "--target", str(args.target), "--max-epochs", str(args.max_epochs), "--out", args.out,
                            "--cpu-model", cpu_model()])
    if code == 0:
        _add_provenance(args.out, python, sys.argv if argv is None else ["recbole_peer.py", *argv])
    return code


def _add_provenance(out, python, argv):
    """Adds this command's provenance to the row `_train` wrote, with the peer environment's own versions."""
    from keras_fame.experiments import provenance, write_json_atomic

    versions = subprocess.run(
        [python, "-c", "import importlib.metadata as m, json; "
                       "print(json.dumps({n: m.version(n) for n in ('torch', 'recbole', 'numpy')}))"],
        capture_output=True, text=True, check=False,
    )
    with open(out) as f:
        row = json.load(f)
    row["provenance"] = provenance(argv)
    row["provenance"]["peer_packages"] = json.loads(versions.stdout) if versions.returncode == 0 else None
    write_json_atomic(out, row)


if __name__ == "__main__":
    sys.exit(main())
