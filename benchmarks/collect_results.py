"""Markdown rows from `results.json` files written by `examples/train_*.py`.

    python benchmarks/collect_results.py runs/*/results.json
"""

import json
import sys

METRICS = ["hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20"]


def row(label, metrics):
    return f"| {label} | " + " | ".join(f"{metrics[m]:.4f}" for m in METRICS) + " |"


def main(paths):
    print("| model (protocol) | " + " | ".join(METRICS) + " |")
    print("|---|" + "---|" * len(METRICS))
    for path in paths:
        with open(path) as f:
            res = json.load(f)
        cfg = res["config"]
        for stage in ("sasrec", "fame"):
            if stage not in res or "test" not in res[stage]:
                continue
            if stage == "fame":
                name = f"{res['dataset']} FAME H={cfg['num_heads']} N={cfg['num_experts']}"
            else:
                name = f"{res['dataset']} SASRec H={cfg['sasrec_heads']}"
            for protocol, metrics in res[stage]["test"].items():
                print(row(f"{name} ({protocol})", metrics))
    for path in paths:
        with open(path) as f:
            res = json.load(f)
        for stage in ("sasrec", "fame"):
            training = res.get(stage, {}).get("training")
            if training:
                secs = training["seconds_per_epoch"]
                print(
                    f"- {path} {stage}: {training['epochs_run']} epochs, best {training['best_epoch']} "
                    f"(val ndcg@10 {training['best_validation']['ndcg@10']:.4f}), "
                    f"{training['wall_seconds']:.0f} s wall, median {sorted(secs)[len(secs) // 2]:.1f} s/epoch"
                )


if __name__ == "__main__":
    main(sys.argv[1:])
