"""Could FAME's gate matter? The routing headroom of trained FAME models, on the validation users.

    python benchmarks/gate_headroom.py --runs RUN_DIR [RUN_DIR ...] --out results/gate_headroom.json

Each RUN_DIR is a finished pipeline folder (`fame.keras` and `results.json`, e.g. one of
`runs/multi_seed/<key>/`). For each, the model's validation users (the split its run used: leave-one-out
of the dataset's sequence file, history excluded) go through `keras_fame.evaluation.head_diagnostics`,
which ranks them by the gated score (Eq. 11), by each head alone, by the mean of the heads (the gate
replaced by `1/H`), and by each user's best head (an optimistic upper bound for a gate that picks one head
per user), and measures how much the heads' top-10 lists overlap. The recomputed gated NDCG@10 is written
beside the one the run recorded at its kept epoch (`recorded_validation_ndcg@10`), so a mismatch shows.

`benchmarks/results_report.py` turns the file into RESULTS.md's section on routing.
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _configuration(run_dir):
    """The multi-seed plan configuration of a `runs/multi_seed/<key>` folder (its committed result file), or None."""
    key = os.path.basename(os.path.normpath(run_dir))
    path = os.path.join(ROOT, "results", "multi_seed", key + ".json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return (json.load(f).get("multi_seed") or {}).get("plan_configuration")


def diagnose(run_dir, data_dir=None):
    """`head_diagnostics` of `run_dir`'s FAME on its validation users, with the run's identity and a check."""
    import keras

    from keras_fame.data import leave_one_out, read_sequences
    from keras_fame.data.registry import find_sequence_file
    from keras_fame.evaluation import head_diagnostics

    with open(os.path.join(run_dir, "results.json")) as f:
        recorded = json.load(f)
    dataset = recorded["dataset"]
    # An explicit --data-dir is the only place looked in: a run is never re-ranked on other data.
    sequence_file = find_sequence_file(dataset, data_dir, fall_back=data_dir is None)
    if sequence_file is None:
        where = f"in --data-dir {data_dir}" if data_dir else "--data-dir or FAME_DATA_DIR"
        raise FileNotFoundError(f"{run_dir}: the {dataset} sequence file is not found ({where})")
    data = read_sequences(sequence_file)
    if data.stats() != recorded["data"]:
        raise FileNotFoundError(f"{sequence_file} is not the data {run_dir} trained on: its statistics "
                                f"{data.stats()} differ from the run's {recorded['data']}")
    model = keras.saving.load_model(os.path.join(run_dir, "fame.keras"), safe_mode=True)
    split = leave_one_out(data, max_len=model.max_len)
    start = time.perf_counter()
    result = head_diagnostics(model, split.validation, ks=(10,))
    return {
        "run": os.path.basename(os.path.normpath(run_dir)),
        "dataset": dataset,
        "configuration": _configuration(run_dir),
        "seed": recorded["config"]["seed"],
        "heads": model.num_heads,
        "seconds": round(time.perf_counter() - start, 1),
        "recorded_validation_ndcg@10": recorded["fame"]["training"]["best_validation"]["ndcg@10"],
        **result,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, help="finished pipeline folders (fame.keras, results.json)")
    parser.add_argument("--data-dir", help="where the datasets are (default: FAME_DATA_DIR, ../shared/data)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    for run in args.runs:
        for name in ("fame.keras", "results.json"):
            if not os.path.isfile(os.path.join(run, name)):
                print(f"error: --runs {run}: no {name} (not a finished pipeline folder)", file=sys.stderr)
                return 2

    from keras_fame.experiments import provenance, write_json_atomic

    rows = []
    for run in args.runs:
        try:
            row = diagnose(run, args.data_dir)
        except FileNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(json.dumps({k: row[k] for k in ("run", "gate_entropy", "gated", "uniform", "oracle_head",
                                              "head_top10_overlap", "recorded_validation_ndcg@10")}), flush=True)
        rows.append(row)
    write_json_atomic(args.out, {**provenance(sys.argv if argv is None else ["gate_headroom.py", *argv]), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
