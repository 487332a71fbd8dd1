"""`results/RESULTS.md` and the README's results table, generated from the JSON files under `results/`.

    python benchmarks/results_report.py            # rewrite results/RESULTS.md and the README's table
    python benchmarks/results_report.py --check    # exit 1 if either differs from what the JSON files give

Nothing here is typed by hand: every number comes from a result file, and CI runs `--check`
(`tests/test_results_report.py`), so the documents cannot drift from the data. The dated log of how the
numbers came about is `results/LOG.md`.

The choice of `make train`'s configuration is made here too, on validation only (`choose`): a
configuration of `CANDIDATE_PLANS` with at least `MIN_SEEDS` finished seeds on every dataset whose FAME has a
higher mean validation NDCG@10 (at the epoch early stopping kept) than `CURRENT_DEFAULT`'s on every dataset
is a candidate; the candidate with the largest mean relative gain leads. It replaces the configuration the
Makefile runs (the incumbent) only if its mean is higher than the incumbent's on every dataset and, on every
dataset where the two means are within one std of each other, both have at least `CLOSE_SEEDS` seeds.
Test numbers never enter it. Beside the choice, every other ranked configuration's FAME is compared with
the chosen one's on validation, paired by seed (`validation_pairs`).
"""

import argparse
import glob
import importlib.util
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_MD = os.path.join(ROOT, "results", "RESULTS.md")
README = os.path.join(ROOT, "README.md")
MAKEFILE = os.path.join(ROOT, "Makefile")
BEGIN, END = "<!-- results-table:begin -->", "<!-- results-table:end -->"

# The plans whose configurations compete for `make train` (the multi-seed runner's; all on the recipe).
CANDIDATE_PLANS = ("backbone_recipe", "facets")
CURRENT_DEFAULT = "pca_recipe"  # `make train`'s TRAIN_ARGS until a configuration wins on validation
MIN_SEEDS = 3
CLOSE_SEEDS = 5  # the issues' protocol: 5 seeds where two configurations are within one std
# The claims the results make: FAME against its own SASRec, facets against the text starts without them.
COMPARISONS = [("pca_recipe:sasrec", "pca_recipe:fame"), ("facets_fusion:sasrec", "facets_fusion:fame"),
               ("pca_recipe", "facets_fusion"), ("facet_recipe", "facets_fusion"),
               ("facets_fusion", "facets_attention"), ("facets_fusion:fame", "facets_gate_agree:fame"),
               # The aims for the configuration chosen in session 19: above its own SASRec and pca_recipe's FAME.
               ("facets_gate_agree:sasrec", "facets_gate_agree:fame"), ("pca_recipe:fame", "facets_gate_agree:fame"),
               # Session 22's choice (d = 128) against the configuration it replaced; its aims: `aim_comparisons`.
               ("facets_gate_agree:fame", "facets_gate_agree_d128:fame")]
DATASETS = ("toys", "beauty")
PAPER = {"toys": {"ndcg@10": 0.0681, "hr@10": 0.1065}, "beauty": {"ndcg@10": 0.0593, "hr@10": 0.0978}}


def aim_comparisons(chosen):
    """`compare_table` pairs for the issues' aims of `chosen`: its FAME against its own SASRec and `CURRENT_DEFAULT`'s FAME."""
    return [(f"{chosen}:sasrec", f"{chosen}:fame"), (f"{CURRENT_DEFAULT}:fame", f"{chosen}:fame")]


def _load(relative):
    path = os.path.join(ROOT, relative)
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(values, digits=4, one_seed=" (1 seed)"):
    """`mean ± sample std`; a single value with `one_seed` after it."""
    values = np.asarray(values, dtype=float)
    if len(values) == 1:
        return f"{values[0]:.{digits}f}{one_seed}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def _validation(runs, model, metric="ndcg@10"):
    return [r.get(model, {}).get("training", {}).get("best_validation", {}).get(metric) for _, _, r in runs]


def choose(groups, configurations, incumbent=None):
    """The validation choice: `(chosen or None, {dataset: [(mean, std, n, configuration)] best first}, note)`.

    A candidate has at least `MIN_SEEDS` seeds on every dataset and a FAME
    whose mean validation NDCG@10 is above `CURRENT_DEFAULT`'s on every
    dataset; the leader is the candidate with the largest mean (over the
    datasets) relative gain over the default. The leader is chosen unless
    `incumbent` (the configuration `make train` runs, a candidate) holds:
    the leader must have the higher mean on every dataset, and where the
    two means are within the larger of their std, both need `CLOSE_SEEDS`
    seeds. `note` says why the incumbent held (empty otherwise). None if
    there is no candidate.
    """
    ranking, stats = {}, {}
    for dataset in DATASETS:
        rows = []
        for config in configurations:
            values = [v for v in _validation(groups.get((dataset, config, "fame"), []), "fame") if v is not None]
            if len(values) >= MIN_SEEDS:
                rows.append((float(np.mean(values)), float(np.std(values, ddof=1)), len(values), config))
                stats[dataset, config] = rows[-1]
        ranking[dataset] = sorted(rows, reverse=True)
    if not all((d, CURRENT_DEFAULT) in stats for d in DATASETS):
        return None, ranking, ""
    gains = {}
    for config in configurations:
        if config != CURRENT_DEFAULT and all((d, config) in stats for d in DATASETS):
            relative = [stats[d, config][0] / stats[d, CURRENT_DEFAULT][0] - 1 for d in DATASETS]
            if min(relative) > 0:
                gains[config] = float(np.mean(relative))
    if not gains:
        return None, ranking, ""
    leader = max(gains, key=gains.get)
    if incumbent not in gains or leader == incumbent:
        return leader, ranking, ""
    reasons = []
    for d in DATASETS:
        (m_l, s_l, n_l, _), (m_i, s_i, n_i, _) = stats[d, leader], stats[d, incumbent]
        if m_l <= m_i:
            reasons.append(f"on {d} its mean is not above `{incumbent}`'s ({m_l:.5f} against {m_i:.5f})")
        elif m_l - m_i <= max(s_l, s_i) and min(n_l, n_i) < CLOSE_SEEDS:
            reasons.append(f"on {d} the two are within one std ({m_l:.5f} against {m_i:.5f}, std up to "
                           f"{max(s_l, s_i):.5f}) with {n_l} and {n_i} seeds, fewer than {CLOSE_SEEDS}")
    if not reasons:
        return leader, ranking, ""
    return incumbent, ranking, f"`{leader}` leads but `{incumbent}` holds: " + "; ".join(reasons) + "."


def validation_pairs(groups, ranking, chosen, compare):
    """Markdown: every other ranked configuration's FAME against `chosen`'s, validation NDCG@10 paired by seed.

    `ranking` is `choose`'s; `compare` is `multi_seed.compare` (means, paired differences, paired t-test).
    """
    def by_seed(dataset, config):  # [(seed, FAME validation NDCG@10)] of the runs that recorded it
        runs = groups.get((dataset, config, "fame"), [])
        return [(seed, v) for (seed, _, _), v in zip(runs, _validation(runs, "fame")) if v is not None]

    rows = []
    for dataset in DATASETS:
        mine = by_seed(dataset, chosen)
        for _, _, _, config in ranking[dataset]:
            if config == chosen:
                continue
            c = compare(mine, by_seed(dataset, config))
            paired = ", ".join(f"{d:+.4f}" for d in c["paired_diffs"])
            rows.append((dataset, f"`{config}`", f"{c['n_a']} / {c['n_b']}", f"{c['diff']:+.4f}",
                         f"{paired} ({','.join(map(str, c['paired_seeds']))})", f"{c['paired_p']:.3f}"))
    return _markdown_table(f"Each other configuration's FAME minus `{chosen}`'s, validation NDCG@10, paired by seed:",
                           ("dataset", "configuration B", f"seeds `{chosen}` / B", "B - chosen (means)",
                            "paired B - chosen (seeds)", "paired p"), rows)


def _flags(configurations, config):
    return " ".join(configurations[config])


def test_table(groups, configurations, dataset, protocol="exclude_history", min_seeds=1):
    lines = ["| configuration | seeds | SASRec NDCG@10 | SASRec HR@10 | FAME NDCG@10 | FAME HR@10 |",
             "|---|---|---|---|---|---|"]
    for config in configurations:
        cells, seeds = [], []
        for model in ("sasrec", "fame"):
            runs = sorted(groups.get((dataset, config, model), []), key=lambda run: run[0])
            seeds = seeds or [run[0] for run in runs]
            for metric in ("ndcg@10", "hr@10"):
                cells.append(_cell([run[1][protocol][metric] for run in runs]) if runs else "")
        if len(seeds) >= min_seeds:
            lines.append(f"| `{config}` | {','.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    paper = PAPER.get(dataset)
    if paper and protocol == "exclude_history":
        lines.append(f"| paper, Table 2, FAME | | | | {paper['ndcg@10']:.4f} | {paper['hr@10']:.4f} |")
    return "\n".join(lines)


def serving_section():
    lines = []
    for path in sorted(glob.glob(os.path.join(ROOT, "results", "serving_load_*.json"))):
        with open(path) as f:
            report = json.load(f)
        name = os.path.relpath(path, ROOT)
        lines += [f"\n`{name}`: {report['model']}, {report.get('threads')} client thread(s), TensorFlow threads "
                  f"{report.get('tf_threads', 'default')}, k = {report['k']}.\n",
                  "| round, signature, batch | requests/s | rows/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|---|"]
        for key, row in report.items():
            if key.startswith("round_"):
                lines.append(f"| {key[len('round_'):]} | {row['requests_per_s']} | {row['rows_per_s']} | "
                             f"{row['p50_ms']} | {row['p99_ms']} | {row['errors']} |")
        lines.append(f"\nRSS after each round (MiB): {report.get('rss_mib_after_each_round')}.")
    return "\n".join(lines)


def _result(name):
    """The JSON file `results/<name>`, or None when it is not there."""
    path = os.path.join(ROOT, "results", name)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def planted_section():
    report = _result("planted_facet_inputs.json")
    if report is None:
        return ""
    names = [k for k in report["rows"][0] if k != "seed" and not k.endswith("gate by facet")]
    lines = ["| seed | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for row in report["rows"]:
        lines.append(f"| {row['seed']} | " + " | ".join(f"{row[n]:.4f}" for n in names) + " |")
    lines.append("| mean | " + " | ".join(f"{np.mean([r[n] for r in report['rows']]):.4f}" for n in names) + " |")
    return "\n".join(lines)


def gate_headroom_section():
    """`results/gate_headroom.json`: per dataset and configuration, what the gate adds and could add (validation)."""
    report = _result("gate_headroom.json")
    if report is None:
        return ""
    groups = {}
    for row in report["rows"]:
        groups.setdefault((row["dataset"], row["configuration"] or row["run"]), []).append(row)
    header = ("dataset", "configuration", "seeds", "gate entropy (log H)", "gated", "gate = 1/H",
              "gated - (1/H), paired", "best single head", "each user's best head", "heads' top-10 overlap")

    def cell(values):  # the seeds column already says how many
        return _cell(values, one_seed="")

    rows = []
    for (dataset, configuration), runs in sorted(groups.items(), key=lambda item: (item[0][0] != "toys", item[0])):
        ndcg = {name: [r[name]["ndcg@10"] for r in runs] for name in ("gated", "uniform", "oracle_head")}
        best_head = [max(m["ndcg@10"] for m in r["head_metrics"]) for r in runs]
        gain = np.subtract(ndcg["gated"], ndcg["uniform"])
        rows.append((dataset, f"`{configuration}`", ", ".join(str(r["seed"]) for r in runs),
                     f"{np.mean([r['gate_entropy'] for r in runs]):.3f} ({runs[0]['gate_entropy_max']:.3f})",
                     cell(ndcg["gated"]), cell(ndcg["uniform"]),
                     f"{gain.mean():+.4f}" + (f" ± {gain.std(ddof=1):.4f}" if len(gain) > 1 else ""),
                     cell(best_head), cell(ndcg["oracle_head"]), cell([r["head_top10_overlap"] for r in runs])))
    worst = max(abs(r["gated"]["ndcg@10"] - r["recorded_validation_ndcg@10"]) for r in report["rows"])
    users = sorted({r["users"] for r in report["rows"]})
    return _markdown_table(
        f"{_origin('results/gate_headroom.json', report)}, {report['machine']['cpu_count']} cores). All validation "
        f"users ({', '.join(f'{u:,}' for u in users)}), NDCG@10, history excluded. The recomputed gated NDCG@10 "
        f"differs from the value each run recorded at its kept epoch by at most {worst:.1e}.", header, rows)


def _markdown_table(caption, header, rows):
    """`caption`, a blank line, then a markdown table with `header` and one line per row of `rows`."""
    lines = [caption, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def scaling_section():
    """The step-scaling runs: Adam against LazyAdam, and with item facets after and before `ItemEmbedding.rows`."""
    parts = []
    captions = {
        "sampled_step_scaling.json": "Adam against LazyAdam, no facets:",
        "sampled_step_scaling_facets.json": "With 2 item facets, the step fusing only the rows it reads "
                                            "(`ItemEmbedding.rows`):",
        "sampled_step_scaling_facets_before.json": "The same command on the commit before `ItemEmbedding.rows` "
                                                   "(the whole fused `[V, d]` table built every step):",
    }
    for name, caption in captions.items():
        report = _result(name)
        if report is None:
            continue
        origin = (f"`{report['command']}` (commit {(report.get('git') or {}).get('commit', '?')[:10]}, "
                  f"{report['machine']['cpu']}, {report['machine']['cpu_count']} cores):")
        rows = [(row["optimizer"], row.get("facets", 0), f"{row['num_items']:,}",
                 f"{row['median_step_seconds'] * 1e3:.0f}") for row in report["rows"]]
        ratios = ", ".join(f"{key} {ratio:.2f}" for key, ratio in report["ratio_largest_to_smallest"].items())
        header = ("optimizer", "item facets", "items", "median step (ms)")
        parts.append(_markdown_table(f"{caption}\n\n{origin}", header, rows)
                     + f"\n\nRatio of the largest to the smallest catalogue's step: {ratios}.")
    if not parts:
        return ""
    parts.append("The pairs take turns step by step, so the ratios hold while other work shares the machine; the "
                 "absolute milliseconds do not.")
    return "\n\n".join(parts)


def _result_files(pattern):
    """`(path relative to the checkout, report)` of every `results/<pattern>` JSON file, sorted by name."""
    for path in sorted(glob.glob(os.path.join(ROOT, "results", pattern))):
        with open(path) as f:
            yield os.path.relpath(path, ROOT), json.load(f)


def _origin(name, report):
    """"`name`: `command` (commit C, CPU" -- the caller closes the parenthesis."""
    commit = (report.get("git") or {}).get("commit", "")[:10]
    if not commit:  # written before provenance: benchmarks/backfill_provenance.py names the commit that added it
        added = (report.get("provenance_recorded_later") or {}).get("first_committed_in", "")[:10]
        commit = f"not recorded; the file was added in {added}" if added else "not recorded"
    cpu = report["machine"].get("cpu", "CPU model not recorded")
    return f"`{name}`: `{report['command']}` (commit {commit}, {cpu}"


def million_section():
    """Every `results/million_items*.json`: the run's stages and, for `--epochs` runs, the learning curve."""
    parts = []
    for name, report in _result_files("million_items*.json"):
        settings, stages = report["settings"], report["stages"]
        evaluate, train = stages["evaluate"], stages["train"]
        lines = [f"{_origin(name, report)}, {report['machine']['cpu_count']} cores).", "",
                 f"{settings['items']:,} items, {settings['users']:,} users, data `{settings.get('data', 'zipf')}`, "
                 f"model `{settings.get('model', 'sasrec')}`, optimizer `{settings.get('optimizer', 'adam')}`, "
                 f"{settings['negatives']} uniform negatives; test on {evaluate['users']:,} users: NDCG@10 "
                 f"**{evaluate['ndcg_at_10']:.4f}** (HR@10 {evaluate['hr_at_10']:.4f}) against popularity "
                 f"{evaluate['popularity_ndcg_at_10']:.4f} (random HR@10 {evaluate['random_hr_at_10']:g}); "
                 f"peak RSS {report['peak_rss_gb']} GB."]
        paired = report.get("paired_ndcg_at_10", {})  # runs since session 19 pair each user's ranks
        if paired:
            names = {"popularity": "popularity",
                     "start_model": f"the SASRec it started from (NDCG@10 "
                                    f"{stages.get('start_model', {}).get('ndcg_at_10', float('nan')):.4f})"}
            lines.append("\nPer-user NDCG@10, the model minus each baseline on the same users: " + "; ".join(
                f"{names.get(key, key)} {p['mean_difference']:+.4f} (95% interval {p['ci95'][0]:+.4f} to "
                f"{p['ci95'][1]:+.4f}, p {p['p_two_sided']:.2g}; better for {p['users_b_better']:,} users, worse for "
                f"{p['users_a_better']:,})" for key, p in paired.items()) + ".")
        if report.get("epochs"):
            rows = [(e["epoch"], e["train_seconds"], e["loss"], e["val_ndcg@10"], e["val_hr@10"], e["peak_rss_gb"])
                    for e in report["epochs"]]
            lines += ["", _markdown_table(
                f"Best validation epoch {train.get('best_epoch')} of {len(report['epochs'])}:",
                ("epoch", "training s", "loss", "validation NDCG@10", "validation HR@10", "peak RSS GB"), rows)]
        else:
            lines.append(f"\n{train['steps']} training steps ({train['seconds']} s): time and memory, not quality.")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def serving_snapshot_section():
    parts = []
    for name, report in _result_files("serving_table_snapshot*.json"):
        settings = report["settings"]
        caption = (f"{_origin(name, report)}). FAME, {settings['items']:,} items, batch {settings['batch']}, chunks of "
                   f"{settings['chunk_size']:,}; the snapshot's top-{settings['k']} equals the per-request table's: "
                   f"{report['top_k_equal']}.")
        parts.append(_markdown_table(caption, ("ranking function", "median ms per request"),
                                     report["median_ms_per_request"].items()))
    return "\n\n".join(parts)


def virtual_devices_section():
    parts = []
    for name, report in _result_files("virtual_devices_*.json"):
        settings = report["settings"]
        caption = (f"{_origin(name, report)}, {report['cores']} core(s) for 4 virtual devices). {report['backend']}, "
                   f"{settings['model']}, {settings['data']}, batch {settings['batch']}.")
        rows = [(row["layout"], row["median_step_ms"], row["ratio_to_one_device"], row["first_step_loss"])
                for row in report["rows"]]
        parts.append(_markdown_table(caption, ("layout", "median step (ms)", "ratio to one device", "first-step loss"),
                                     rows))
    return "\n\n".join(parts)


def build():
    """`(RESULTS.md text, the README's table block, the chosen configuration's flags, the recipe's flags)`."""
    runner = _load("benchmarks/multi_seed.py")
    speed = _load("benchmarks/speed_table.py")
    configurations = runner.plan_configurations(list(runner.PLANS))
    candidates = runner.plan_configurations(list(CANDIDATE_PLANS))
    groups = runner.collect(configurations)
    train_options = makefile_train_args(runner.RECIPE)[0]  # read once, not once per candidate
    incumbent = next((c for c in candidates if _options(candidates[c]) == train_options), None)
    winner, ranking, note = choose(groups, candidates, incumbent)
    default = winner or CURRENT_DEFAULT

    out = [
        "# Results: where things stand",
        "",
        "Generated by `python benchmarks/results_report.py` from the JSON files under `results/`; CI checks that",
        "this file is that script's output, so do not edit it by hand. How the numbers came about (dates,",
        "machines, every probe): [LOG.md](LOG.md). Each result file (e.g. `results/multi_seed/<key>.json`) holds",
        "its command, git commit, machine and package versions; files written before that was recorded name the",
        "commit that added them and what is missing (`provenance_recorded_later`).",
        "",
        "Protocol: leave-one-out, the target ranked against all items; `exclude_history` (the S3-Rec family's",
        "protocol, the paper's) leaves the user's other items out, `all_items` (RecBole's) does not. Cells are",
        "mean ± sample std over seeds. d = 64, 2 blocks, FAME H = 2, N = 4 unless the configuration says otherwise.",
        "",
        "## The choice of `make train`'s configuration (validation only)",
        "",
        f"Rule: a configuration of the plans {', '.join(f'`{p}`' for p in CANDIDATE_PLANS)} with at least {MIN_SEEDS} "
        f"seeds on {' and '.join(DATASETS)} whose FAME has a higher mean validation NDCG@10 than `{CURRENT_DEFAULT}`'s "
        "(the configuration `make train` ran before this rule) on every dataset is a candidate; the candidate with "
        "the largest mean relative gain over the datasets leads. It replaces the configuration `make train` runs "
        "only if its mean is higher on every dataset and, on every dataset where the two means are within one std, "
        f"both have at least {CLOSE_SEEDS} seeds. Test numbers play no part.",
        "",
    ]
    for dataset in DATASETS:
        out += [_markdown_table(f"FAME validation NDCG@10, {dataset}, best first:",
                                ("configuration", "seeds", "validation NDCG@10"),
                                [(f"`{c}`", n, f"{m:.4f} ± {s:.4f}") for m, s, n, c in ranking[dataset]]), ""]
    if note:
        out += [note, ""]
    out.append(f"**Chosen: `{winner}`** (`{_flags(candidates, winner)}`)." if winner else
               f"**No configuration is above `{CURRENT_DEFAULT}` on both datasets; it stays the default** "
               f"(`{_flags(candidates, CURRENT_DEFAULT)}`).")
    out += ["", validation_pairs(groups, ranking, default, runner.compare)]
    out += ["", "## Test results (`exclude_history`)", ""]
    for dataset in DATASETS:
        out += [f"### {dataset}", "", test_table(groups, configurations, dataset), ""]
    out += ["## Test results (`all_items`)", ""]
    for dataset in DATASETS:
        out += [f"### {dataset}", "", test_table(groups, configurations, dataset, "all_items"), ""]
    out += ["## Paired comparisons (test NDCG@10, `exclude_history`)", "",
            "Same seed, same split and batch order: the paired differences remove part of the seed noise. "
            "`in std`: the difference of means over the larger of the two std (the issues' \"more than 2 std\").",
            runner.compare_table(list(runner.PLANS), COMPARISONS + [p for p in aim_comparisons(default) if p not in COMPARISONS]), ""]
    out += ["## Every configuration tried: validation NDCG@10 at the kept epoch", "",
            "Gate entropy (mean over 2,048 validation users; `log H` in parentheses is a gate that does not route)",
            "and each head's own validation NDCG@10 where the run recorded them.", "",
            runner.selection_table(list(runner.PLANS)), "",
            "The flags of each configuration are in `benchmarks/multi_seed.py` (`PLANS`).", ""]
    rows = speed.load_rows()
    if rows:
        out += ["## Speed (Toys, one CPU core per row)", "", speed.format_table(rows), ""]
    negatives = _load("benchmarks/negatives.py").table()
    if negatives:
        out += ["## Negatives: sampled against full softmax at equal epochs (`benchmarks/negatives.py`)", "",
                "SASRec on Toys, 10 epochs, best validation NDCG@10 (history excluded).", "", negatives, ""]
    cold = _load("benchmarks/cold_start.py")
    cold_tables = [cold.summary(os.path.join(ROOT, "results", "cold_start", sub)) for sub in ("", "neighbour_offsets")]
    if any(t.count("\n| ") > 1 for t in cold_tables):
        out += ["## Cold start: items no training sequence contains (`benchmarks/cold_start.py`)", "",
                "10% of the items held out of training, SASRec with the package defaults, one seed; test users whose "
                "target is held out are *cold*. `facets_*` variants fuse brand and leaf category into the item table. "
                "`results/cold_start/neighbour_offsets/` holds reruns that also imputed the held-out offsets.", "",
                cold_tables[0], "", "Reruns with imputed offsets:", "", cold_tables[1], ""]
    headroom = gate_headroom_section()
    if headroom:
        out += ["## Does the gate route? What it adds and could add (`benchmarks/gate_headroom.py`)", "",
                "Trained FAME models on their validation users: ranked by the gated score (Eq. 11, "
                "`sum_h g_h s_h(v)`), by the same heads with the gate replaced by `1/H`, by the best single head, "
                "and by each user's best head (chosen on the target: an optimistic bound for any gate that picks one "
                "head). The last column is the share of items two heads' top-10 lists have in common. "
                "`keras_fame.evaluation.head_diagnostics` computes them.", "", headroom, ""]
    scaling = scaling_section()
    if scaling:
        out += ["## FAME's sampled-softmax step against the catalogue (`benchmarks/sampled_step_scaling.py`)", "",
                scaling, ""]
    million = million_section()
    if million:
        out += ["## A million items (`benchmarks/million_items.py`)", "", million, ""]
    snapshot = serving_snapshot_section()
    if snapshot:
        out += ["## Serving a facet model: the item table per request or snapshotted "
                "(`benchmarks/serving_table_snapshot.py`)", "",
                "Medians of requests taking turns in one process: ratios hold while other work shares the machine.",
                "", snapshot, ""]
    virtual = virtual_devices_section()
    if virtual:
        out += ["## Several devices, simulated: 4 virtual CPU devices (`benchmarks/virtual_devices.py`)", "",
                "The devices are slices of the same core(s), so no layout can be faster than one device here: the "
                "ratio is what the layout costs (splitting the batch, replicating or sharding the weights, "
                "reducing the gradients), not what real devices would gain.", "", virtual, ""]
    serving = serving_section()
    if serving:
        out += ["## Serving (`benchmarks/serving_load.py`)", serving, ""]
    planted = planted_section()
    if planted:
        out += ["## Facet inputs on planted-facet data (`benchmarks/planted_facet_inputs.py`)", "",
                "Held-out NDCG@10 of FAME (H = 2, N = 2) trained from scratch, without and with the facets.", "",
                planted, ""]
    results_md = "\n".join(out).rstrip() + "\n"

    table = ["| configuration (flags of `keras-fame train`) | Toys SASRec | Toys FAME | Beauty SASRec | Beauty FAME |",
             "|---|---|---|---|---|"]
    shown = [c for c in candidates if all(len(groups.get((d, c, "fame"), [])) >= MIN_SEEDS for d in DATASETS)]
    for config in shown:
        mark = " **(`make train`)**" if config == default else ""
        cells = [_cell([run[1]["exclude_history"]["ndcg@10"] for run in groups[(d, config, m)]])
                 for d in DATASETS for m in ("sasrec", "fame")]
        table.append(f"| `{config}`{mark}: `{short_flags(candidates[config], runner.RECIPE)}` | " + " | ".join(cells) + " |")
    table.append(f"| paper, Table 2, FAME | | {PAPER['toys']['ndcg@10']:.4f} | | {PAPER['beauty']['ndcg@10']:.4f} |")
    readme_block = "\n".join([BEGIN, *table, END])
    return results_md, readme_block, candidates[default], runner.RECIPE


def short_flags(flags, recipe):
    """`flags` with the recipe's flags written as `--recipe bsarec` (where they are all there, in order)."""
    flags, recipe = list(flags), list(recipe)
    for i in range(len(flags) - len(recipe) + 1):
        if flags[i : i + len(recipe)] == recipe:
            return " ".join(flags[:i] + ["--recipe", "bsarec"] + flags[i + len(recipe) :])
    return " ".join(flags)


def _options(tokens):
    """Command-line tokens as `{flag: value}` (a flag without a value: True), order aside."""
    options, i = {}, 0
    while i < len(tokens):
        flag = tokens[i]
        has_value = i + 1 < len(tokens) and not tokens[i + 1].startswith("--")
        options[flag] = tokens[i + 1] if has_value else True
        i += 2 if has_value else 1
    return options


def makefile_train_args(recipe):
    """`(options, TRAIN_ARGS)`: the Makefile's `TRAIN_ARGS` as `_options` (`--recipe bsarec` spelt out), as written."""
    with open(MAKEFILE) as f:
        line = next(line for line in f if line.startswith("TRAIN_ARGS ?="))
    tokens = line.split("?=", 1)[1].split()
    expanded = []
    for i, token in enumerate(tokens):
        if token == "bsarec" and i and tokens[i - 1] == "--recipe":
            expanded = expanded[:-1] + list(recipe)
        else:
            expanded.append(token)
    return _options(expanded), " ".join(tokens)


def makefile_matches(chosen_flags, recipe):
    """`(ok, TRAIN_ARGS)`: whether the Makefile's `TRAIN_ARGS` (`--recipe bsarec` spelt out) are `chosen_flags`."""
    options, train_args = makefile_train_args(recipe)
    return options == _options(chosen_flags), train_args


def _with_block(readme, block):
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"{README} has no {BEGIN} ... {END} block")
    head, rest = readme.split(BEGIN, 1)
    return head + block + rest.split(END, 1)[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if RESULTS.md or the README's table is stale")
    args = parser.parse_args(argv)
    results_md, block, chosen_flags, recipe = build()
    with open(README) as f:
        readme = f.read()
    new_readme = _with_block(readme, block)
    current = open(RESULTS_MD).read() if os.path.isfile(RESULTS_MD) else None
    if args.check:
        stale = [p for p, ok in ((RESULTS_MD, current == results_md), (README, new_readme == readme)) if not ok]
        for path in stale:
            print(f"{os.path.relpath(path, ROOT)} is not what the result files give: run "
                  "python benchmarks/results_report.py", file=sys.stderr)
        ok, train_args = makefile_matches(chosen_flags, recipe)
        if not ok:
            print(f"Makefile: TRAIN_ARGS ?= {train_args} is not the configuration chosen on validation "
                  f"({' '.join(chosen_flags)}; results/RESULTS.md)", file=sys.stderr)
        return 1 if stale or not ok else 0
    with open(RESULTS_MD, "w") as f:
        f.write(results_md)
    with open(README, "w") as f:
        f.write(new_readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
