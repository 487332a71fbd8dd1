"""The paper's Fig. 5, 6 and 7, regenerated: sweeps over H and N, and the case study.

    make paper DATASET=toys                                    # all of it, real data (long on a CPU)
    python benchmarks/paper_figures.py all --dataset toys --seeds 0     # the same: run, plot, case-study
    python benchmarks/paper_figures.py run --dataset toys --seeds 0     # the H and N sweeps (resumable)
    python benchmarks/paper_figures.py plot --dataset toys              # figures + tables from finished runs
    python benchmarks/paper_figures.py case-study --dataset toys --model runs/toys/fame.keras
    python benchmarks/paper_figures.py quick --out results/paper_quick  # synthetic data, about a minute

Fig. 5: test NDCG@20 and HR@20 against the number of heads H in {1, 2, 4, 8, 16},
SASRec (H attention heads) beside FAME w/o MoE (H facet heads, N = 1). One
pipeline run gives both: its SASRec stage has H heads and its FAME stage is
transplanted from it with N = 1.
Fig. 6: the same metrics against the number of experts N in {2, 4, 8, 16, 32}
at H = 2 (our pipeline's default), with the best FAME w/o MoE of Fig. 5 as a
dashed line.
Fig. 7: one test user's history (item text), FAME's gate weights over heads,
each head's top-5 with brand and category, and a facet-alignment table over
all test users: how often each head's top-10 shares the brand / leaf
category of the user's last item, against FAME's overall top-10 and chance.

The sweeps run through `benchmarks/multi_seed.py` (plans `paper_heads` and
`paper_experts`; random item-table start as in the paper; each run in its own
subprocess with its log on disk, finished runs skipped, an interrupted run
resumed; the N runs transplant from the SASRec of Fig. 5's H = 2 run, which
is theirs: same flags but `--experts`, so the sweep trains 5 SASRec stages for
its 10 FAME stages). `quick` runs the same configurations in-process on small planted-facet
data (`keras_fame.data.synthetic.planted_facets`) and writes the same files:
it checks the machinery, and its numbers say nothing about Amazon data.
Metrics use the `exclude_history` protocol; error bars are the std over
seeds where there is more than one.
"""

import argparse
import contextlib
import html
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import multi_seed  # noqa: E402

HEADS = (1, 2, 4, 8, 16)
EXPERTS = (2, 4, 8, 16, 32)
FIG6_HEADS = 2
METRICS = ("ndcg@20", "hr@20")
PROTOCOL = "exclude_history"


def heads_flags(h):
    return ["--text-init", "none", "--heads", str(h), "--experts", "1"]


def experts_flags(n):
    return ["--text-init", "none", "--heads", str(FIG6_HEADS), "--experts", str(n)]


multi_seed.PLANS["paper_heads"] = {f"H={h}": heads_flags(h) for h in HEADS}
multi_seed.PLANS["paper_experts"] = {f"N={n}": experts_flags(n) for n in EXPERTS}


# ---------------------------------------------------------------- collecting runs


def collect(results, dataset):
    """`{("heads"|"experts", value): {"sasrec": [test dicts], "fame": [...], "seeds": [...]}}`."""
    groups = {}
    for r in results:
        info = r.get("multi_seed", {})
        if r.get("dataset") != dataset or "test" not in r.get("fame", {}):
            continue
        for sweep, plan, values, flags_of in (
            ("heads", "paper_heads", HEADS, heads_flags),
            ("experts", "paper_experts", EXPERTS, experts_flags),
        ):
            for v in values:
                if info.get("flags") == flags_of(v):
                    g = groups.setdefault((sweep, v), {"sasrec": [], "fame": [], "seeds": []})
                    g["sasrec"].append(r["sasrec"]["test"][PROTOCOL])
                    g["fame"].append(r["fame"]["test"][PROTOCOL])
                    g["seeds"].append(info.get("seed"))
    return groups


def _stats(tests, metric):
    values = np.array([t[metric] for t in tests], dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0, len(values)


def _cell(mean, std, n):
    return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}"


# ---------------------------------------------------------------- figures 5 and 6


# The y axis spans at least this fraction of its centre value: matplotlib would otherwise stretch a
# 0.0005 spread (one seed's noise on Toys NDCG@20) over the whole panel and draw a flat curve as a trend.
MIN_RELATIVE_Y_SPAN = 0.1


def _log2_axis(ax, values, label, metric):
    low, high = ax.get_ylim()
    centre, span = (low + high) / 2, high - low
    if span < MIN_RELATIVE_Y_SPAN * abs(centre):
        half = MIN_RELATIVE_Y_SPAN * abs(centre) / 2
        ax.set_ylim(centre - half, centre + half)
    ax.set_xscale("log", base=2)
    ax.set_xticks(values, [str(v) for v in values])
    ax.set_xlabel(label)
    ax.set_ylabel(metric.upper())
    ax.grid(alpha=0.3)


def _seed_note(points):
    counts = sorted({len(g["seeds"]) for g in points})
    if counts == [1]:
        return "1 seed, no error bars"
    label = f"{counts[0]}-{counts[-1]}" if len(counts) > 1 else f"{counts[0]}"
    return f"{label} seeds, mean ± std"


def _save(fig, axes, title, path):
    import matplotlib.pyplot as plt

    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_sweeps(groups, out_dir, title):
    """Writes fig5_heads.png, fig6_experts.png and paper_figures.md; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    written = []
    lines = [f"# {title}: Fig. 5 and 6 ({PROTOCOL}, test set; mean ± std over seeds)\n"]
    heads = [h for h in HEADS if ("heads", h) in groups]
    best = None
    if heads:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        lines += ["## Fig. 5: heads H (FAME w/o MoE: N = 1)\n",
                  "| H | seeds | SASRec NDCG@20 | SASRec HR@20 | FAME w/o MoE NDCG@20 | FAME w/o MoE HR@20 |",
                  "|---|---|---|---|---|---|"]
        for h in heads:
            g = groups[("heads", h)]
            cells = [_cell(*_stats(g[model], k)) for model in ("sasrec", "fame") for k in METRICS]
            lines.append(f"| {h} | {len(g['seeds'])} | " + " | ".join(cells) + " |")
            mean = _stats(g["fame"], "ndcg@20")[0]
            if best is None or mean > best[1]:
                best = (h, mean, _stats(g["fame"], "hr@20")[0])
        for ax, metric in zip(axes, METRICS):
            for model, label, marker in (("sasrec", "SASRec", "s"), ("fame", "FAME w/o MoE", "o")):
                stats = [_stats(groups[("heads", h)][model], metric) for h in heads]
                ax.errorbar(heads, [s[0] for s in stats], yerr=[s[1] for s in stats], marker=marker, capsize=3, label=label)
            _log2_axis(ax, heads, "heads H", metric)
        seeds = _seed_note([groups[("heads", h)] for h in heads])
        written.append(_save(fig, axes, f"{title}: Fig. 5, heads ({seeds})", os.path.join(out_dir, "fig5_heads.png")))
    experts = [n for n in EXPERTS if ("experts", n) in groups]
    if experts:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        lines += [f"\n## Fig. 6: experts N (H = {FIG6_HEADS})\n",
                  "| N | seeds | FAME NDCG@20 | FAME HR@20 |", "|---|---|---|---|"]
        for n in experts:
            g = groups[("experts", n)]
            cells = [_cell(*_stats(g["fame"], k)) for k in METRICS]
            lines.append(f"| {n} | {len(g['seeds'])} | " + " | ".join(cells) + " |")
        if best:
            lines.append(f"\nBest FAME w/o MoE (Fig. 5): H = {best[0]}, NDCG@20 {best[1]:.4f}, HR@20 {best[2]:.4f}.")
        for ax, metric, line in zip(axes, METRICS, (best[1:] if best else (None, None))):
            stats = [_stats(groups[("experts", n)]["fame"], metric) for n in experts]
            ax.errorbar(experts, [s[0] for s in stats], yerr=[s[1] for s in stats], marker="o", capsize=3, label="FAME")
            if line is not None:
                ax.axhline(line, linestyle="--", color="grey", label=f"best FAME w/o MoE (H={best[0]})")
            _log2_axis(ax, experts, "experts N", metric)
        seeds = _seed_note([groups[("experts", n)] for n in experts])
        written.append(_save(fig, axes, f"{title}: Fig. 6, experts ({seeds})", os.path.join(out_dir, "fig6_experts.png")))
    table = os.path.join(out_dir, "paper_figures.md")
    with open(table, "w") as f:
        f.write("\n".join(lines) + "\n")
    return written + [table]


# ---------------------------------------------------------------- figure 7


def facet_alignment(model, evaluation, last_labels_fn, facets, batch_size=512):
    """Per facet: share of each head's top-10 (and the overall top-10) sharing the last item's label.

    Args:
        model: a FAME.
        evaluation: an `EvaluationSet` (its inputs are the users' histories).
        last_labels_fn: `facet -> [num_items + 1]` labels (-1 = none).
        facets: facet names.

    Returns:
        `{facet: {"overall": x, "head_0": x, ..., "chance": x, "users": n}}`; a user counts for a
        facet when its last item has that label.
    """
    ranker = model.ranker(k=10, explain=True)
    inputs = evaluation.inputs
    overall, per_head = [], []
    for start in range(0, len(inputs), batch_size):
        out = ranker.predict_on_batch(inputs[start : start + batch_size])
        overall.append(np.asarray(out["item_ids"]))
        per_head.append(np.asarray(out["head_item_ids"]))
    overall, per_head = np.concatenate(overall), np.concatenate(per_head)
    last = inputs[:, -1]
    report = {}
    for facet in facets:
        labels = last_labels_fn(facet)
        user_label = labels[last]
        keep = user_label >= 0
        entry = {"users": int(keep.sum())}
        if keep.any():
            want = user_label[keep][:, None]
            entry["overall"] = float((labels[overall[keep]] == want).mean())
            for h in range(per_head.shape[1]):
                entry[f"head_{h}"] = float((labels[per_head[keep, h]] == want).mean())
            item_labels = labels[1:]
            counts = np.bincount(item_labels[item_labels >= 0])
            entry["chance"] = float((counts[want[:, 0]] / len(item_labels)).mean())
        report[facet] = entry
    return report


def case_study(model, evaluation, texts, label_fn, facets, out_dir, title, user=None, history_shown=8):
    """Writes fig7_case_study.png and case_study.md for one test user; returns the paths and the report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    inputs, targets = evaluation.inputs, evaluation.targets
    if user is None:
        # The first test user (in id order) whose target FAME ranks in its top-10: a success case, as papers show.
        found, ranker = None, model.ranker(k=10)
        for start in range(0, len(inputs), 512):
            ids = np.asarray(ranker.predict_on_batch(inputs[start : start + 512])["item_ids"])
            hits = np.flatnonzero((ids == targets[start : start + 512, None]).any(axis=1))
            if len(hits):
                found = start + int(hits[0])
                break
        user = 0 if found is None else found
    out = model.recommend(inputs[user : user + 1], k=5, explain=True)
    weights = out["head_weights"][0]
    history = [int(i) for i in inputs[user] if i > 0][-history_shown:]

    def describe(item):
        labels = ", ".join(f"{f}={label_fn(f, item)}" for f in facets)
        text = f"{item}: {html.unescape(texts[item])[:60]}" if texts is not None else f"item {item}"
        return text + (f" [{labels}]" if labels else "")

    alignment = facet_alignment(model, evaluation, lambda f: label_fn(f, None), facets)
    md = [f"# {title}: Fig. 7, case study (test user index {user}, target {int(targets[user])})\n",
          "History (newest last):\n"] + [f"- {describe(i)}" for i in history]
    md += ["\nGate weights over heads: " + ", ".join(f"head {h}: {w:.3f}" for h, w in enumerate(weights)), ""]
    for h in range(len(weights)):
        md.append(f"Head {h} top-5:\n")
        md += [f"- {describe(int(i))}" for i in out["head_item_ids"][0, h]]
        md.append("")
    md.append("FAME top-5:\n")
    md += [f"- {describe(int(i))}" + (" <- target" if int(i) == int(targets[user]) else "") for i in out["item_ids"][0]]
    md += ["\n## Facet alignment over all test users\n",
           "Share of top-10 items with the same label as the user's last item (users whose last item has the label).\n",
           "| facet | users | chance | FAME top-10 | " + " | ".join(f"head {h}" for h in range(len(weights))) + " |",
           "|---|---|---|---|" + "---|" * len(weights)]
    for facet, e in alignment.items():
        if e["users"]:
            heads = " | ".join(f"{e[f'head_{h}']:.3f}" for h in range(len(weights)))
            md.append(f"| {facet} | {e['users']} | {e['chance']:.3f} | {e['overall']:.3f} | {heads} |")

    def line(item, mark=" "):
        # One fixed-width line per item for the figure: id, text, then each facet's label.
        # Amazon titles keep HTML entities (`Cr&egrave;me`): unescaped for display only.
        text = (html.unescape(texts[item]) if texts is not None else f"item {item}").replace("\n", " ")
        text = text if len(text) <= 44 else text[:43] + "~"
        labels = " | ".join(f"{str(label_fn(f, item))[:18]:<18}" for f in facets)
        return f"{mark}{item:>6} {text:<44} | {labels}"

    header = f" {'':>6} {'item text':<44} | " + " | ".join(f"{f[:18]:<18}" for f in facets)
    fig = plt.figure(figsize=(13, 8))
    grid = fig.add_gridspec(2, 2, width_ratios=(2.1, 1), height_ratios=(1, 1.6), hspace=0.3, wspace=0.15)
    ax = fig.add_subplot(grid[0, 0])
    ax.axis("off")
    ax.set_title(f"History of test user {user} (newest last)", loc="left", fontsize=10)
    ax.text(0, 1, "\n".join([header] + [line(i) for i in history]), va="top", family="monospace", fontsize=7)
    ax = fig.add_subplot(grid[0, 1])
    ax.bar(range(len(weights)), weights, color="tab:blue")
    ax.axhline(1 / len(weights), color="gray", linestyle=":", linewidth=1)
    ax.set_xticks(range(len(weights)))
    ax.set_xlabel("head")
    ax.set_ylabel("gate weight")
    ax.set_ylim(0, 1)
    ax.set_title("Gate over heads (dotted: uniform)", fontsize=10)
    ax = fig.add_subplot(grid[1, 0])
    ax.axis("off")
    target = int(targets[user])
    ax.set_title(f"Each head's top-5 and FAME's top-5 (> target {target})", loc="left", fontsize=10)
    rows = [header]
    for h in range(len(weights)):
        rows.append(f"head {h} (gate {weights[h]:.2f})")
        rows += [line(int(i), ">" if int(i) == target else " ") for i in out["head_item_ids"][0, h]]
    rows.append("FAME (gated)")
    rows += [line(int(i), ">" if int(i) == target else " ") for i in out["item_ids"][0]]
    ax.text(0, 1, "\n".join(rows), va="top", family="monospace", fontsize=6.5)
    # Facet alignment over all test users: does head h's top-10 share facet f with the last item?
    ax = fig.add_subplot(grid[1, 1])
    shown = [f for f in facets if alignment[f]["users"]]
    bars = ["chance", "overall"] + [f"head_{h}" for h in range(len(weights))]
    width = 0.8 / len(bars)
    for b, name in enumerate(bars):
        ax.bar([i + b * width for i in range(len(shown))], [alignment[f][name] for f in shown], width,
               label="FAME top-10" if name == "overall" else name.replace("_", " "))
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(shown))])
    ax.set_xticklabels(shown, fontsize=8)
    ax.set_ylabel("share of top-10 with the last item's label")
    ax.set_title("Facet alignment, all test users", fontsize=10)
    ax.legend(fontsize=7)
    fig.suptitle(f"{title}: Fig. 7, case study")
    png = os.path.join(out_dir, "fig7_case_study.png")
    fig.savefig(png, dpi=120)
    plt.close(fig)
    path = os.path.join(out_dir, "case_study.md")
    with open(path, "w") as f:
        f.write("\n".join(md) + "\n")
    from keras_fame.experiments import provenance

    with open(os.path.join(out_dir, "facet_alignment.json"), "w") as f:
        json.dump({"user": int(user), "head_weights": weights.tolist(), "alignment": alignment, **provenance()}, f,
                  indent=2)
    return [png, path], alignment


def _real_case_study(dataset, model_path, out_dir, user=None, data_dir=None):
    import keras

    from keras_fame.data.registry import ITEM_TEXT_FILES, find_sequence_file
    from keras_fame.data import leave_one_out, read_item_text, read_sequences

    path = find_sequence_file(dataset, data_dir)
    if path is None:
        raise SystemExit(f"error: {dataset} data not found (set FAME_DATA_DIR or --data-dir)")
    model = keras.saving.load_model(model_path, safe_mode=True)
    data = read_sequences(path)
    split = leave_one_out(data, max_len=model.max_len)
    text = read_item_text(os.path.join(os.path.dirname(path), ITEM_TEXT_FILES[dataset]), num_items=data.num_items)
    facets = ("brand", "category_leaf")

    def label_fn(facet, item):
        labels = text.labels(facet)
        if item is None:
            return labels
        label = int(labels[item])
        return text.label_names.get(label, "-") if label >= 0 else "-"

    title = f"{dataset}, {os.path.relpath(model_path)}"
    return case_study(model, split.test, text.texts, label_fn, facets, out_dir, title, user)


# ---------------------------------------------------------------- quick mode


def quick(out_dir, seeds=(0,)):
    """The sweeps and the case study on small planted-facet data, in-process (about a minute)."""
    import keras

    from keras_fame.data import leave_one_out
    from keras_fame.data.sequences import write_sequences
    from keras_fame.data.synthetic import planted_facets
    from keras_fame.experiments import run_pipeline

    os.makedirs(out_dir, exist_ok=True)
    data, facts = planted_facets(num_users=200, num_colours=6, num_shapes=6, max_length=14, seed=0)
    settings = dict(hidden_dim=16, max_len=12, epochs=2, fame_epochs=1, batch_size=256, patience=1, dropout=0.2,
                    verbose=0, resume=False)
    results = []
    configs = [(heads_flags(h), h, 1) for h in HEADS] + [(experts_flags(n), FIG6_HEADS, n) for n in EXPERTS]
    with tempfile.TemporaryDirectory(prefix="paper-quick-") as work:
        sequence_file = os.path.join(work, "synthetic.txt")
        write_sequences(sequence_file, data)
        for seed in seeds:
            for flags, h, n in configs:
                run_dir = os.path.join(work, f"H{h}-N{n}-seed{seed}")
                with open(os.path.join(work, "pipeline.log"), "a") as log, contextlib.redirect_stdout(log):
                    r = run_pipeline(sequence_file, "synthetic", run_dir, num_heads=h, num_experts=n, seed=seed, **settings)
                r["multi_seed"] = {"flags": flags, "seed": seed}
                results.append(r)
        # The case study's model: the first seed's FAME with the fewest experts of Fig. 6.
        case_model = os.path.join(work, f"H{FIG6_HEADS}-N{EXPERTS[0]}-seed{seeds[0]}", "fame.keras")
        model = keras.saving.load_model(case_model, safe_mode=True)
    written = plot_sweeps(collect(results, "synthetic"), out_dir, "planted-facet data (quick)")
    split = leave_one_out(data, max_len=model.max_len)
    labels = {"colour": facts["item_colour"], "shape": facts["item_shape"]}

    def label_fn(facet, item):
        return labels[facet] if item is None else int(labels[facet][item])

    paths, _ = case_study(model, split.test, None, label_fn, ("colour", "shape"), out_dir, "planted-facet data (quick)")
    return written + paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the H and N sweeps (through multi_seed.py; finished runs are skipped)")
    run.add_argument("--dataset", choices=("toys", "beauty"), required=True)
    run.add_argument("--seeds", type=int, nargs="+", default=[0])
    run.add_argument("--figures", nargs="+", choices=("heads", "experts"), default=["heads", "experts"])
    plot = sub.add_parser("plot", help="Fig. 5 and 6 with their table, from the finished runs")
    plot.add_argument("--dataset", choices=("toys", "beauty"), required=True)
    plot.add_argument("--out", help="default: results/paper/<dataset>")
    case = sub.add_parser("case-study", help="Fig. 7 and the facet-alignment table from a trained FAME")
    case.add_argument("--dataset", choices=("toys", "beauty"), required=True)
    case.add_argument("--model", help="a FAME .keras file trained on the dataset (default: the N=4 sweep run, seed 0)")
    case.add_argument("--user", type=int, help="test user index (default: the first whose target FAME ranks top-10)")
    case.add_argument("--data-dir")
    case.add_argument("--out", help="default: results/paper/<dataset>")
    every = sub.add_parser("all", help="run, plot and case-study for one dataset")
    every.add_argument("--dataset", choices=("toys", "beauty"), required=True)
    every.add_argument("--seeds", type=int, nargs="+", default=[0])
    every.add_argument("--data-dir")
    every.add_argument("--out", help="default: results/paper/<dataset>")
    q = sub.add_parser("quick", help="everything on small synthetic data (about a minute)")
    q.add_argument("--out", default=os.path.join("results", "paper_quick"))
    q.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args(argv)

    start = time.perf_counter()
    if args.command in ("run", "all"):
        for figure in getattr(args, "figures", ("heads", "experts")):
            plan = f"paper_{figure}"
            for seed in args.seeds:
                for name, flags in multi_seed.PLANS[plan].items():
                    if multi_seed.run_one(args.dataset, name, flags, seed) is None:
                        print(f"error: {name} seed {seed} failed; rerun to continue", file=sys.stderr)
                        return 1
        if args.command == "run":
            return 0
    if args.command == "quick":
        written = quick(args.out, tuple(args.seeds))
    else:
        out = args.out or os.path.join(multi_seed.ROOT, "results", "paper", args.dataset)
        written = []
        if args.command in ("plot", "all"):
            written += plot_sweeps(collect(multi_seed.load_results(), args.dataset), out, args.dataset)
        if args.command in ("case-study", "all"):
            model = getattr(args, "model", None) or os.path.join(
                multi_seed.RUNS, multi_seed.run_key(args.dataset, experts_flags(4), 0), "fame.keras"
            )
            if not os.path.isfile(model):
                parser.error(f"--model {model}: no such file (train it first, e.g. with the `run` subcommand)")
            written += _real_case_study(args.dataset, model, out, getattr(args, "user", None), args.data_dir)[0]
    for path in written:
        print(path)
    print(f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
