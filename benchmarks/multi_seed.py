"""Resumable multi-seed runs of the training pipeline, and their mean ± std.

    python benchmarks/multi_seed.py run --plan text_pretraining --dataset toys --seeds 0 1 2
    python benchmarks/multi_seed.py summary --plan text_pretraining

A *plan* names configurations, each a list of `examples/train_<dataset>.py`
flags. Every (dataset, configuration, seed) runs in its own subprocess with
its log on disk (`runs/multi_seed/<key>/train.log`); its `results.json` is
copied to `results/multi_seed/<key>.json`, where `<key>` is derived from the
dataset, the flags and the seed. A rerun skips every key whose result file
exists, so a long sweep can be stopped (or killed) and continued, in another
session if need be; the run that was interrupted continues from its last
finished epoch (the pipeline checkpoints every epoch in its output folder).
A full run whose `--sasrec-only` twin (same flags and seed) has finished
starts from that twin's SASRec instead of training it again.
`summary` prints mean ± std (and each seed) of the test metrics for SASRec
and FAME of every configuration, both protocols.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "results", "multi_seed")
RUNS = os.path.join(ROOT, "runs", "multi_seed")

RECIPE = [
    "--ffn-activation", "gelu", "--intermediate-dim", "256", "--init-std", "0.02", "--dropout", "0.5",
    "--layer-norm-eps", "1e-12", "--every-prefix", "--monitor", "ndcg@20", "--patience", "10", "--epochs", "200",
]

# Configurations: name -> flags of examples/train_<dataset>.py (on top of its defaults).
PLANS = {
    "text_pretraining": {
        "random": ["--text-init", "none"],
        "pca": ["--text-init", "pca"],
        "facet": ["--text-init", "facet"],
        "facet_frozen": ["--text-init", "facet", "--text-frozen"],
        "pca_frozen": ["--text-init", "pca", "--text-frozen"],
    },
    # The BSARec-family backbone recipe (issue 9, item 7) on top of the text starts: GELU FFN of
    # width 4d, N(0, 0.02) kernels, dropout 0.5, LayerNorm eps 1e-12, every prefix as its own row
    # (trained on its newest position only), early stopping on validation NDCG@20, patience 10.
    "backbone_recipe": {
        **{f"{start}_recipe": ["--text-init", start, *RECIPE] for start in ("pca", "none", "facet")},
        # The backbone alone (random start), SASRec stage only: does the text start still add on top?
        "none_recipe_sasrec": ["--text-init", "none", *RECIPE, "--sasrec-only"],
        # The text table frozen (plus a learned per-item ID offset) under the recipe, which trains the
        # trainable start back to where a random start ends (session 8, Toys seed 0).
        "pca_frozen_recipe": ["--text-init", "pca", "--text-frozen", *RECIPE],
        # The paper picks d from {64, 128} per model (§5.4): the PCA start and the recipe at d = 128
        # (FFN width 4d = 512; the later flag wins).
        "pca_recipe_d128": ["--text-init", "pca", *RECIPE, "--hidden-dim", "128", "--intermediate-dim", "512"],
    },
}


# The random-start runs of sessions 1-3 (another 2-core machine, same code path and defaults:
# SASRec dropout 0.3, FAME H=2 N=4 dropout 0.5, W_f identity), shown as a baseline by `summary`.
EARLIER_RANDOM_START = {
    "toys": ["toys_fame_h2n4_do0.5_wfidH", "toys_seed1", "toys_seed2"],
    "beauty": ["beauty_fame_h2n4_do0.5_wfidH", "beauty_seed1"],
}


def run_key(dataset, flags, seed):
    digest = hashlib.sha1(json.dumps([dataset, list(flags), int(seed)]).encode()).hexdigest()[:10]
    return f"{dataset}-seed{seed}-{digest}"


def reuse_sasrec_only_run(dataset, flags, seed, out_dir):
    """Starts `out_dir` from the finished `--sasrec-only` run of the same flags and seed, if there is one.

    The pipeline's configuration (and so its resume check) does not include
    `--sasrec-only`, so a folder holding that run's `results.json` and
    `sasrec.keras` continues with the FAME stage ("SASRec: finished
    before"), exactly as a full run of these flags would after its SASRec
    stage. Returns the donor folder, or None (nothing copied).
    """
    if "--sasrec-only" in flags or os.path.exists(os.path.join(out_dir, "results.json")):
        return None
    donor = os.path.join(RUNS, run_key(dataset, [*flags, "--sasrec-only"], seed))
    try:
        with open(os.path.join(donor, "results.json")) as f:
            finished = "test" in json.load(f).get("sasrec", {})
    except (OSError, ValueError):
        return None
    if not finished or not os.path.isfile(os.path.join(donor, "sasrec.keras")):
        return None
    os.makedirs(out_dir, exist_ok=True)
    for name in ("results.json", "sasrec.keras", "text_table.npy", "train.log"):
        if os.path.isfile(os.path.join(donor, name)):
            shutil.copy(os.path.join(donor, name), os.path.join(out_dir, name))
    return donor


def run_one(dataset, name, flags, seed, dry_run=False):
    key = run_key(dataset, flags, seed)
    result_path = os.path.join(RESULTS, f"{key}.json")
    if os.path.isfile(result_path):
        print(f"skip {name} seed {seed}: {result_path} exists", flush=True)
        return result_path
    out_dir = os.path.join(RUNS, key)
    if not dry_run:
        donor = reuse_sasrec_only_run(dataset, flags, seed, out_dir)
        if donor:
            print(f"  {name} seed {seed}: SASRec stage taken from the finished --sasrec-only run {donor}", flush=True)
    command = [
        sys.executable, os.path.join(ROOT, "examples", f"train_{dataset}.py"),
        "--seed", str(seed), "--output-dir", out_dir, "--verbose", "2", *flags,
    ]
    print(f"run {name} seed {seed} -> {key}: {' '.join(command[1:])}", flush=True)
    if dry_run:
        return None
    os.makedirs(out_dir, exist_ok=True)
    start = time.perf_counter()
    with open(os.path.join(out_dir, "train.log"), "a") as log:  # a resumed run appends
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if code != 0:
        print(f"  failed with exit code {code}; see {out_dir}/train.log", flush=True)
        return None
    with open(os.path.join(out_dir, "results.json")) as f:
        results = json.load(f)
    results["multi_seed"] = {
        "plan_configuration": name, "flags": list(flags), "seed": seed, "key": key,
        "command": " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in command[1:]),
        "wall_seconds": time.perf_counter() - start,
    }
    os.makedirs(RESULTS, exist_ok=True)
    tmp = result_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2)
    os.replace(tmp, result_path)
    shutil.copy(os.path.join(out_dir, "train.log"), os.path.join(RESULTS, f"{key}.log"))
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    return result_path


def load_results():
    rows = []
    if not os.path.isdir(RESULTS):
        return rows
    for name in sorted(os.listdir(RESULTS)):
        if name.endswith(".json"):
            with open(os.path.join(RESULTS, name)) as f:
                rows.append(json.load(f))
    return rows


def summarize(plan, metrics=("ndcg@10", "hr@10", "ndcg@20", "hr@20"), protocols=("exclude_history", "all_items")):
    """Markdown tables: mean ± std (n) and each seed, per dataset, configuration, model, protocol.

    `plan` is a plan name or a list of them (their configurations side by side).
    """
    plans = [plan] if isinstance(plan, str) else list(plan)
    configurations = {name: flags for p in plans for name, flags in PLANS[p].items()}
    groups = {}
    for dataset, names in EARLIER_RANDOM_START.items():
        for name in names:
            with open(os.path.join(ROOT, "results", "runs", f"{name}.json")) as f:
                r = json.load(f)
            for model in ("sasrec", "fame"):
                key = (dataset, "random (sessions 1-3)", model)
                groups.setdefault(key, []).append((r["config"]["seed"], r[model]["test"], r))
    for r in load_results():
        info = r.get("multi_seed", {})
        if configurations.get(info.get("plan_configuration")) != info.get("flags"):
            continue
        for model in ("sasrec", "fame"):
            if "test" in r.get(model, {}):
                key = (r["dataset"], info["plan_configuration"], model)
                groups.setdefault(key, []).append((info["seed"], r[model]["test"], r))
    lines = []
    for protocol in protocols:
        lines += [f"\n### Test, {protocol}\n", "| dataset | start | model | seeds | " + " | ".join(metrics) + " |",
                  "|---|---|---|---|" + "---|" * len(metrics)]
        order = ["random (sessions 1-3)", *configurations]
        for (dataset, config, model), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1]), kv[0][2] != "sasrec")):
            runs = sorted(runs, key=lambda run: run[0])
            cells = []
            for m in metrics:
                values = np.array([run[1][protocol][m] for run in runs])
                if len(values) == 1:
                    cells.append(f"{values[0]:.4f} (one seed)")
                    continue
                each = ", ".join(f"{v:.4f}" for v in values)
                cells.append(f"{values.mean():.4f} ± {values.std(ddof=1):.4f} ({each})")
            seeds = ",".join(str(run[0]) for run in runs)
            label = "SASRec" if model == "sasrec" else "FAME"
            lines.append(f"| {dataset} | {config} | {label} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run every (configuration, seed) not yet finished")
    run.add_argument("--plan", choices=sorted(PLANS), default="text_pretraining")
    run.add_argument("--dataset", choices=("toys", "beauty"), action="append", required=True)
    run.add_argument("--configs", nargs="+", help="configuration names (default: all of the plan)")
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    run.add_argument("--seed-major", action="store_true", help="loop seeds outside configurations")
    run.add_argument("--dry-run", action="store_true")
    summary = sub.add_parser("summary", help="mean ± std tables of the finished runs")
    summary.add_argument("--plan", choices=sorted(PLANS), nargs="+", default=["text_pretraining"])
    args = parser.parse_args(argv)

    if args.command == "summary":
        print(summarize(args.plan))
        return 0
    configs = args.configs or list(PLANS[args.plan])
    unknown = [c for c in configs if c not in PLANS[args.plan]]
    if unknown:
        parser.error(f"unknown configurations {unknown}; the plan has {list(PLANS[args.plan])}")
    for dataset in args.dataset:
        pairs = [(c, s) for s in args.seeds for c in configs] if args.seed_major else [(c, s) for c in configs for s in args.seeds]
        for name, seed in pairs:
            run_one(dataset, name, PLANS[args.plan][name], seed, dry_run=args.dry_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
