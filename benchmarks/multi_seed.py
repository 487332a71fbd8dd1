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
starts from that twin's SASRec instead of training it again, and a
random-start run (`--text-init none`) transplants from the SASRec of a finished
run that differs from it only in FAME-stage flags (`--experts`, ...): a sweep
over N (Fig. 6) trains its SASRec stage once.
`summary` prints mean ± std (and each seed) of the test metrics for SASRec
and FAME of every configuration, both protocols; `compare` says how far one
configuration is above another (in std, Welch's and a paired t-test):

    python benchmarks/multi_seed.py compare --plan backbone_recipe --pair pca_recipe facet_recipe

`summary --epochs [--target 0.075]` adds how long each run trained (best and
last epoch, first epoch reaching a validation NDCG@10): the time-to-quality view.
"""

import argparse
import hashlib
import json
import os
import re
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
        # The same for the facet pre-trainer's table: frozen, each head's slice keeps its facet's
        # structure through training, which is where facet alignment could earn its keep in FAME.
        "facet_frozen_recipe": ["--text-init", "facet", "--text-frozen", *RECIPE],
        # The paper picks d from {64, 128} per model (§5.4): the PCA start and the recipe at d = 128
        # (FFN width 4d = 512; the later flag wins).
        "pca_recipe_d128": ["--text-init", "pca", *RECIPE, "--hidden-dim", "128", "--intermediate-dim", "512"],
    },
    # What issue 9 asks to try when FAME+ falls short, probed on the cheap: SASRec only, the paper's
    # recipe, one setting changed at a time from `facet_sasrec` (temperature 0.1, one hidden layer of
    # 256 per head; the SASRec stage of `text_pretraining`'s `facet` row, rerun on the probe's machine).
    "pretrainer_ablation": {
        "facet_sasrec": ["--text-init", "facet", "--sasrec-only"],  # the reference, on the probe's machine
        "facet_t0.05_sasrec": ["--text-init", "facet", "--pretrain-temperature", "0.05", "--sasrec-only"],
        "facet_t0.5_sasrec": ["--text-init", "facet", "--pretrain-temperature", "0.5", "--sasrec-only"],
        "facet_linear_sasrec": ["--text-init", "facet", "--pretrain-head-layers", "0", "--sasrec-only"],
        "facet_deep_sasrec": ["--text-init", "facet", "--pretrain-head-layers", "2", "--sasrec-only"],
        "pca_whiten_sasrec": ["--text-init", "pca", "--pca-whiten", "--sasrec-only"],
        # Facet choice: H = 4 heads pre-trained on brand, category level 1, level 2 and leaf, against the
        # PCA start with the same 4-head SASRec (a 4-head SASRec differs from the 2-head reference).
        "facet_h4_sasrec": ["--text-init", "facet", "--heads", "4", "--sasrec-only"],
        "pca_h4_sasrec": ["--text-init", "pca", "--heads", "4", "--sasrec-only"],
    },
}


# Item facets inside the model (issue 26), on `make train`'s pipeline (PCA start + recipe, H=2, N=4): the
# brand and leaf-category labels of every item (`--item-facets auto`) fused into the item table, facet k
# in the k-th column slice; an auxiliary loss in which SASRec (and FAME's head h) predicts the next item's
# labels (weight lambda, both stages or the FAME stage only); the gate's temperature. Chosen on validation.
FACETS = ["--text-init", "pca", *RECIPE, "--item-facets", "auto"]
PLANS["facets"] = {
    "facets_fusion": FACETS,
    "facets_aux0.5": [*FACETS, "--facet-loss-weight", "0.5"],
    "facets_fusion_fameaux0.5": [*FACETS, "--fame-facet-loss-weight", "0.5"],
    "facets_fusion_fameaux0.5_t0.5": [*FACETS, "--fame-facet-loss-weight", "0.5", "--gate-temperature", "0.5"],
    "facets_fusion_t0.5": [*FACETS, "--gate-temperature", "0.5"],  # a sharper gate, no facet loss
    # The routing loss in the FAME stage: the heads' own softmaxes as experts mixed by the gate.
    "facets_route0.5": [*FACETS, "--routing-loss-weight", "0.5"],
    "facets_route1": [*FACETS, "--routing-loss-weight", "1"],
    # The gate reads the history's facet agreement (how far the newest item shares each label with the ones before).
    "facets_gate_agree": [*FACETS, "--gate-facets"],
    "facets_aux2": [*FACETS, "--facet-loss-weight", "2"],
    "facets_sum_aux0.5": [*FACETS, "--facet-fusion", "sum", "--facet-loss-weight", "0.5"],
    # All four facets (brand, category levels 1 and 2, leaf), 16 columns each: head 0 holds brand and level 1.
    "facets_all4": ["--text-init", "pca", *RECIPE, "--item-facets", "brand,level1,level2,leaf"],
    # Facet attention: every head's logits also hold a decoupled facet term (DIF-SR style), both stages.
    "facets_attention": [*FACETS, "--facet-attention"],
    # d = 128 (the paper picks d from {64, 128}, section 5.4; FFN width 4d = 512, the later flag wins): each
    # facet's column slice doubles too.
    "facets_fusion_d128": [*FACETS, "--hidden-dim", "128", "--intermediate-dim", "512"],
    "facets_gate_agree_d128": [*FACETS, "--hidden-dim", "128", "--intermediate-dim", "512", "--gate-facets"],
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


# Flags (with their value) that only the FAME stage reads: runs that differ only in these train the
# same SASRec stage, so a sweep over them (Fig. 6's N) trains it once (`reuse_sibling_sasrec`).
FAME_STAGE_FLAGS = (
    "--experts", "-N", "--fame-epochs", "--fame-warmup-epochs", "--fame-dropout", "--w-f-init", "--w-f-gain",
    "--fame-facet-loss-weight", "--gate-temperature", "--head-diagnostics-users", "--routing-loss-weight",
)
FAME_STAGE_SWITCHES = ("--gate-facets",)  # FAME-stage flags without a value


def reuse_sibling_sasrec(dataset, flags, seed, out_dir):
    """Starts `out_dir` from another run folder whose SASRec stage is this run's, finished, if there is one.

    A sibling has the same dataset and seed and the same flags once the
    FAME-stage ones (`FAME_STAGE_FLAGS`) are dropped (found through the
    `flags.json` every run folder gets); its `results.json` must record a
    finished SASRec stage with `sasrec.keras` beside it. It may still be
    training its FAME stage. Its `results.json` (without the FAME stage),
    `sasrec.keras` and `text_table.npy` are copied, so the pipeline resumes
    here at the FAME stage, exactly as after its own SASRec stage (the FAME
    stage's seeding does not depend on how SASRec was obtained). Works for
    every item-table start, text starts included. Returns the donor folder
    or None.
    """
    if "--sasrec-only" in flags or os.path.exists(os.path.join(out_dir, "results.json")) or not os.path.isdir(RUNS):
        return None
    mine = sasrec_stage_flags(flags)
    for key in sorted(os.listdir(RUNS)):
        donor = os.path.join(RUNS, key)
        try:
            with open(os.path.join(donor, "flags.json")) as f:
                info = json.load(f)
            with open(os.path.join(donor, "results.json")) as f:
                results = json.load(f)
        except (OSError, ValueError):
            continue
        if donor == out_dir or info.get("dataset") != dataset or info.get("seed") != seed:
            continue
        if info.get("flags") == list(flags) or sasrec_stage_flags(info.get("flags", [])) != mine:
            continue
        if "test" not in results.get("sasrec", {}) or not os.path.isfile(os.path.join(donor, "sasrec.keras")):
            continue
        os.makedirs(out_dir, exist_ok=True)
        for name in ("sasrec.keras", "text_table.npy"):
            if os.path.isfile(os.path.join(donor, name)):
                shutil.copy(os.path.join(donor, name), os.path.join(out_dir, name))
        kept = {k: v for k, v in results.items() if k not in ("fame", "table")}
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump(kept, f, indent=2)
        return donor
    return None


def sasrec_stage_flags(flags):
    """`flags` without the FAME-stage ones (`FAME_STAGE_FLAGS` and their values, `FAME_STAGE_SWITCHES`), in order."""
    out, skip = [], False
    for flag in flags:
        if skip:
            skip = False
        elif flag in FAME_STAGE_SWITCHES:
            continue
        elif flag in FAME_STAGE_FLAGS:
            skip = True
        else:
            out.append(flag)
    return out


def run_one(dataset, name, flags, seed, dry_run=False):
    key = run_key(dataset, flags, seed)
    result_path = os.path.join(RESULTS, f"{key}.json")
    if os.path.isfile(result_path):
        print(f"skip {name} seed {seed}: {result_path} exists", flush=True)
        return result_path
    out_dir = os.path.join(RUNS, key)
    donor = None
    if not dry_run:
        donor = reuse_sasrec_only_run(dataset, flags, seed, out_dir)
        if donor:
            print(f"  {name} seed {seed}: SASRec stage taken from the finished --sasrec-only run {donor}", flush=True)
        else:
            donor = reuse_sibling_sasrec(dataset, flags, seed, out_dir)
            if donor:
                print(f"  {name} seed {seed}: SASRec stage taken from {donor} (same flags but FAME-stage ones)",
                      flush=True)
    command = [
        sys.executable, os.path.join(ROOT, "examples", f"train_{dataset}.py"),
        "--seed", str(seed), "--output-dir", out_dir, "--verbose", "2", *flags,
    ]
    print(f"run {name} seed {seed} -> {key}: {' '.join(command[1:])}", flush=True)
    if dry_run:
        return None
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "flags.json"), "w") as f:  # how `reuse_sibling_sasrec` finds this run
        json.dump({"dataset": dataset, "flags": list(flags), "seed": seed}, f)
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
    if donor:
        results["multi_seed"]["sasrec_from"] = os.path.basename(donor)
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


EARLIER_LABEL = "random (sessions 1-3)"
MODEL_LABEL = {"sasrec": "SASRec", "fame": "FAME"}


def plan_configurations(plans):
    """A plan name or a list of them -> {configuration: flags}, their configurations side by side."""
    plans = [plans] if isinstance(plans, str) else list(plans)
    return {name: flags for p in plans for name, flags in PLANS[p].items()}


def in_table_order(groups, configurations):
    """`collect`'s groups as table rows: by dataset, then plan order (earlier runs first), SASRec before FAME."""
    order = [EARLIER_LABEL, *[c for c in configurations if c != EARLIER_LABEL]]
    return sorted(groups.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1]), kv[0][2] != "sasrec"))


def collect(configurations, results=None):
    """Groups finished runs: (dataset, configuration, model) -> [(seed, test metrics, result)].

    The random-start runs of sessions 1-3 (`EARLIER_RANDOM_START`, another
    machine, same code path and defaults) are their own group, except when the
    plans include the `random` configuration (the same flags): then they join
    it (a seed run in both places counts once: the newer run).
    A `--sasrec-only` run whose full twin (same flags and seed) has finished and
    is one of `configurations` is left out: the twin's SASRec is the same run.
    """
    results = load_results() if results is None else results
    shown = set(map(json.dumps, configurations.values()))  # a twin counts only where it is in the table too
    finished = {r["multi_seed"]["key"] for r in results
                if "multi_seed" in r and json.dumps(r["multi_seed"].get("flags")) in shown}
    groups = {}
    for r in results:
        info = r.get("multi_seed", {})
        if configurations.get(info.get("plan_configuration")) != info.get("flags"):
            continue
        flags = info["flags"]
        if "--sasrec-only" in flags:
            twin = run_key(r["dataset"], [f for f in flags if f != "--sasrec-only"], info["seed"])
            if twin in finished:
                continue
        for model in ("sasrec", "fame"):
            if "test" in r.get(model, {}):
                key = (r["dataset"], info["plan_configuration"], model)
                groups.setdefault(key, []).append((info["seed"], r[model]["test"], r))
    label = "random" if configurations.get("random") == ["--text-init", "none"] else EARLIER_LABEL
    for dataset, names in EARLIER_RANDOM_START.items():
        for name in names:
            with open(os.path.join(ROOT, "results", "runs", f"{name}.json")) as f:
                r = json.load(f)
            for model in ("sasrec", "fame"):
                runs = groups.setdefault((dataset, label, model), [])
                if r["config"]["seed"] not in {run[0] for run in runs}:
                    runs.append((r["config"]["seed"], r[model]["test"], r))
    return groups


def compare(a, b):
    """How far configuration `b` is from `a`: two lists of (seed, value) of one metric.

    Returns the means and sample std of each, the difference of means, that
    difference in units of the larger of the two std (the issue's "more than 2
    std"), Welch's t-test over the two groups and, over the seeds both have,
    the paired differences and a paired t-test (same seed: same split, same
    batch order, same initial draws, so the pairing removes part of the noise).
    """
    from scipy import stats  # locked with jax; the library never imports it

    va = np.array([v for _, v in sorted(a)], dtype=float)
    vb = np.array([v for _, v in sorted(b)], dtype=float)
    out = {"n_a": len(va), "n_b": len(vb), "mean_a": float(va.mean()), "mean_b": float(vb.mean()),
           "diff": float(vb.mean() - va.mean())}
    out["std_a"] = float(va.std(ddof=1)) if len(va) > 1 else float("nan")
    out["std_b"] = float(vb.std(ddof=1)) if len(vb) > 1 else float("nan")
    spread = max([x for x in (out["std_a"], out["std_b"]) if np.isfinite(x)], default=0.0)
    out["diff_in_std"] = out["diff"] / spread if spread > 0 else float("nan")
    out["welch_p"] = (float(stats.ttest_ind(vb, va, equal_var=False).pvalue)
                      if len(va) > 1 and len(vb) > 1 else float("nan"))
    by_seed_a, by_seed_b = dict(a), dict(b)
    common = sorted(set(by_seed_a) & set(by_seed_b))
    pa = np.array([by_seed_a[s] for s in common], dtype=float)
    pb = np.array([by_seed_b[s] for s in common], dtype=float)
    out["paired_seeds"] = common
    out["paired_diffs"] = [float(d) for d in pb - pa]
    out["paired_p"] = (float(stats.ttest_rel(pb, pa).pvalue)
                       if len(common) > 1 and np.ptp(pb - pa) > 1e-12 else float("nan"))
    return out


def _side(name):
    """`"pca_recipe"` -> ("pca_recipe", None); `"pca_recipe:fame"` -> ("pca_recipe", "fame")."""
    config, _, model = name.partition(":")
    if model not in ("", "sasrec", "fame"):
        raise ValueError(f"{name!r}: the model after ':' is sasrec or fame")
    return config, model or None


def compare_table(plans, pairs, datasets=None, models=("sasrec", "fame"), metric="ndcg@10", protocol="exclude_history"):
    """Markdown: for each (dataset, model, A vs B) the comparison of `compare` on one metric.

    A side may name its model (`"pca_recipe:sasrec"`): then that model is compared
    (e.g. `pca_recipe:sasrec` vs `pca_recipe:fame`: FAME against its own SASRec, seed by seed);
    a side that names none takes the other side's (`pca_recipe:fame` vs `facet_recipe`: FAME vs FAME).
    """
    groups = collect(plan_configurations(plans))
    lines = [f"\n### {metric}, {protocol}: B - A\n",
             "| dataset | A | B | seeds A / B | mean A | mean B | B - A | in std | Welch p | paired B - A (seeds) | paired p |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    names = sorted({d for d, _, _ in groups}) if datasets is None else datasets
    for dataset in names:
        for a, b in pairs:
            (ca, ma), (cb, mb) = _side(a), _side(b)
            # A side that names its model gives one row, the other side (if it names none) the same
            # model; neither naming one gives one row per model.
            rows = [(ma or mb, mb or ma)] if ma or mb else [(m, m) for m in models]
            for model_a, model_b in rows:
                ga, gb = groups.get((dataset, ca, model_a)), groups.get((dataset, cb, model_b))
                if not ga or not gb:
                    continue
                c = compare([(s, t[protocol][metric]) for s, t, _ in ga], [(s, t[protocol][metric]) for s, t, _ in gb])
                paired = ", ".join(f"{d:+.4f}" for d in c["paired_diffs"])
                lines.append(
                    f"| {dataset} | {ca} {MODEL_LABEL[model_a]} | {cb} {MODEL_LABEL[model_b]} | {c['n_a']} / {c['n_b']} "
                    f"| {c['mean_a']:.4f} | {c['mean_b']:.4f} | {c['diff']:+.4f} | {c['diff_in_std']:.1f} "
                    f"| {c['welch_p']:.3f} | {paired} ({','.join(map(str, c['paired_seeds']))}) | {c['paired_p']:.3f} |")
    return "\n".join(lines)


def summarize(plan, metrics=("ndcg@10", "hr@10", "ndcg@20", "hr@20"), protocols=("exclude_history", "all_items")):
    """Markdown tables: mean ± std (n) and each seed, per dataset, configuration, model, protocol.

    `plan` is a plan name or a list of them (their configurations side by side).
    """
    configurations = plan_configurations(plan)
    groups = collect(configurations)
    lines = []
    for protocol in protocols:
        lines += [f"\n### Test, {protocol}\n", "| dataset | start | model | seeds | " + " | ".join(metrics) + " |",
                  "|---|---|---|---|" + "---|" * len(metrics)]
        for (dataset, config, model), runs in in_table_order(groups, configurations):
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
            lines.append(f"| {dataset} | {config} | {MODEL_LABEL[model]} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def selection_table(plans, metric="ndcg@10", datasets=None):
    """Markdown: the validation `metric` at each run's selected epoch, mean ± std over seeds (what a choice rests on).

    One row per (dataset, configuration, model) with a finished run: the
    best epoch's validation value (the epoch early stopping kept, by the
    run's monitor), mean ± std and each seed; for FAME also the gate's mean
    entropy at that epoch where the run recorded it (`head_diagnostics`,
    2048 validation users; `log H` = a gate that does not route) and each
    head's own validation NDCG@10 there. No test numbers: choose here,
    then report the chosen configuration's test metrics once.
    """
    configurations = plan_configurations(plans)
    groups = collect(configurations)
    lines = [f"| dataset | configuration | model | seeds | validation {metric} | gate entropy (log H) | heads' own ndcg@10 |",
             "|---|---|---|---|---|---|---|"]
    for (dataset, config, model), runs in in_table_order(groups, configurations):
        if config == EARLIER_LABEL or (datasets and dataset not in datasets):
            continue
        runs = sorted(runs, key=lambda run: run[0])
        values, entropies, heads = [], [], []
        for _, _, result in runs:
            training = result.get(model, {}).get("training", {})
            if "best_validation" not in training:
                continue
            values.append(training["best_validation"][metric])
            at_best = [d for d in training.get("head_diagnostics", []) if d["epoch"] == training["best_epoch"]]
            if at_best:
                entropies.append((at_best[0]["gate_entropy"], at_best[0]["gate_entropy_max"]))
                heads.append([h["ndcg@10"] for h in at_best[0]["head_metrics"]])
        if not values:
            continue
        values = np.array(values)
        each = ", ".join(f"{v:.4f}" for v in values)
        cell = f"{values[0]:.4f} (one seed)" if len(values) == 1 else f"{values.mean():.4f} ± {values.std(ddof=1):.4f} ({each})"
        gate = f"{np.mean([e for e, _ in entropies]):.3f} ({entropies[0][1]:.3f})" if entropies else ""
        own = " / ".join(f"{v:.4f}" for v in np.mean(heads, axis=0)) if heads else ""
        seeds = ",".join(str(run[0]) for run in runs)
        lines.append(f"| {dataset} | {config} | {MODEL_LABEL[model]} | {seeds} | {cell} | {gate} | {own} |")
    return "\n".join(lines)


_EPOCH_LINE = re.compile(r"^Epoch (\d+): (val_.*)\(exclude_history")
_METRIC = re.compile(r"val_(\w+@\d+)=([0-9.]+)")


def validation_history(result, model):
    """Per-epoch validation metrics (exclude_history) of one stage of a stored run.

    From `results.json` where it holds them (runs since session 8); else read
    back from the run's log (`results/multi_seed/<key>.log`): the epoch lines
    after the stage's header ("== SASRec" / "== FAME"), the last line of an
    epoch winning (a resumed run repeats the epoch it was killed in).
    """
    history = result.get(model, {}).get("training", {}).get("validation_history")
    if history:
        return history
    key = result.get("multi_seed", {}).get("key")
    path = os.path.join(RESULTS, f"{key}.log")
    if not key or not os.path.isfile(path):
        return []
    epochs, stage = {}, None
    with open(path) as f:
        for line in f:
            if line.startswith("== SASRec"):
                stage = "sasrec"
            elif line.startswith("== FAME"):
                stage = "fame"
            match = _EPOCH_LINE.match(line)
            if match and stage == model:
                epochs[int(match.group(1))] = {m: float(v) for m, v in _METRIC.findall(match.group(2))}
    return [{"epoch": e, **epochs[e]} for e in sorted(epochs)]


def training_table(plans, target=None, metric="ndcg@10"):
    """Markdown: how long each configuration trains: best and last epoch per seed, and (with
    `target`) the first epoch whose validation `metric` reaches it — the time-to-quality view.

    The epochs of the SASRec stage and the FAME stage are counted apart (the FAME
    stage starts from the finished SASRec).
    """
    configurations = plan_configurations(plans)
    groups = collect(configurations)
    head = "| dataset | start | model | seeds | best epoch | epochs run |"
    rule = "|---|---|---|---|---|---|"
    if target is not None:
        head += f" first epoch with validation {metric} >= {target} |"
        rule += "---|"
    lines = ["\n### Training length (validation, exclude_history)\n", head, rule]
    for (dataset, config, model), runs in in_table_order(groups, configurations):
        runs = sorted(runs, key=lambda run: run[0])
        trainings = [run[2].get(model, {}).get("training", {}) for run in runs]
        cells = [", ".join(str(t.get(field, "?")) for t in trainings) for field in ("best_epoch", "epochs_run")]
        if target is not None:
            reached = []
            for run in runs:
                history = validation_history(run[2], model)
                first = [h["epoch"] for h in history if h.get(metric, 0.0) >= target]
                reached.append(str(first[0]) if first else ("never" if history else "?"))
            cells.append(", ".join(reached))
        seeds = ",".join(str(run[0]) for run in runs)
        lines.append(f"| {dataset} | {config} | {MODEL_LABEL[model]} | {seeds} | " + " | ".join(cells) + " |")
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
    summary.add_argument("--epochs", action="store_true", help="also how long each run trained")
    summary.add_argument("--target", type=float, help="with --epochs: the first epoch reaching this validation NDCG@10")
    select = sub.add_parser("selection", help="validation metric at the selected epoch, mean ± std (no test numbers)")
    select.add_argument("--plan", choices=sorted(PLANS), nargs="+", default=["facets"])
    select.add_argument("--dataset", action="append", choices=("toys", "beauty"))
    select.add_argument("--metric", default="ndcg@10")
    versus = sub.add_parser("compare", help="is B above A? difference, in std, Welch and paired t-tests")
    versus.add_argument("--plan", choices=sorted(PLANS), nargs="+", default=["text_pretraining"])
    versus.add_argument("--pair", nargs=2, action="append", required=True, metavar=("A", "B"),
                        help="configurations; CONFIG:sasrec or CONFIG:fame compares those models")
    versus.add_argument("--dataset", action="append", choices=("toys", "beauty"))
    versus.add_argument("--metric", default="ndcg@10")
    versus.add_argument("--protocol", default="exclude_history", choices=("exclude_history", "all_items"))
    args = parser.parse_args(argv)

    if args.command == "summary":
        print(summarize(args.plan))
        if args.epochs:
            print(training_table(args.plan, args.target))
        return 0
    if args.command == "selection":
        print(selection_table(args.plan, args.metric, args.dataset))
        return 0
    if args.command == "compare":
        known = {name for p in args.plan for name in PLANS[p]} | {EARLIER_LABEL}
        try:
            unknown = [name for pair in args.pair for name in pair if _side(name)[0] not in known]
        except ValueError as error:
            parser.error(str(error))
        if unknown:
            parser.error(f"unknown configurations {unknown}; the plans have {sorted(known)}")
        print(compare_table(args.plan, args.pair, args.dataset, metric=args.metric, protocol=args.protocol))
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
