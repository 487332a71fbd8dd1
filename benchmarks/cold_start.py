"""Cold-start items: rank items that no training sequence contains, from their text.

    python benchmarks/cold_start.py --dataset toys --seed 0

Protocol (issue 9, "beyond the paper"): a random 10% of the items are held
out: their events are removed from every sequence except where one is a
user's test target (`keras_fame.data.cold_start`), and their columns are
masked out of the training softmax. Models are trained and early-stopped on
validation NDCG@10 as usual; the test users are then split into *cold*
(target held out) and *warm* users, each evaluated by full ranking over all
items (exclude_history). Variants, all SASRec with the package defaults:

- `popularity`: training counts (a held-out item has count 0);
- `id_only`: random item table (held-out rows are never trained);
- `pca_start`: the table starts as PCA of the MiniLM text embeddings; the
  held-out rows get no gradient and stay at their text start;
- `pca_frozen` / `facet_frozen`: frozen text table (PCA or
  `FacetContrastivePretrainer`) plus a learned per-item ID offset, which is
  0 for the held-out items (`item_content=True`);
- `facet_bounded`: `facet_frozen` with each offset row's L2 norm bounded by
  the mean norm of the text rows (`offset_max_norm`), so trained items stay
  near their text and content-only items compete on the same footing.
- `pca_dropout` / `facet_dropout`: `pca_frozen` / `facet_frozen` with
  `offset_dropout=0.5`: at each training step every item's offset is
  dropped with probability 0.5, so the model learns to score items from
  their content alone (DropoutNet-style; `ItemEmbedding`).
- `facet_dropout_scaled`: `facet_dropout` with a trainable scale on the
  frozen content table (`learn_content_scale=True`), so content-only rows
  can reach the magnitude of trained ones.
- `facets_dropout_scaled`: `facet_dropout_scaled` with the items' brand and
  leaf category fused into the item table (`item_facets`, slice fusion): a
  held-out item enters with its labels' embeddings, which the trained items
  sharing them have learnt.
- `facets_id_only`: `id_only` with the same facet inputs (no text at all).

Every variant with a frozen content table is evaluated twice on the same
trained model: with the held-out items at offset 0 (`test`), and after
`model.impute_offsets(held_out, neighbours=K)` gives each held-out item the
similarity-weighted mean offset of its K text-nearest trained items
(`test_neighbour_offsets`; `--neighbours`, default 10; training-free).

Each variant's result is written to `results/cold_start/<dataset>-seed<seed>-<variant>.json`
as soon as it finishes; a rerun skips finished variants.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_fame import SASRec  # noqa: E402
from keras_fame.data.registry import ITEM_TEXT_FILES, find_sequence_file  # noqa: E402
from keras_fame.data import leave_one_out, read_sequences  # noqa: E402
from keras_fame.data.cold_start import hold_out_items, popularity_scores, remove_items, split_by_target  # noqa: E402
from keras_fame.evaluation import evaluate_ranking  # noqa: E402
from keras_fame.evaluation.ranking import history_mask_rows, metrics_from_ranks, target_ranks  # noqa: E402
from keras_fame.losses import MaskedSoftmaxCrossEntropy  # noqa: E402
from keras_fame.data.item_facets import attribute_file_beside, read_item_facets  # noqa: E402
from keras_fame.experiments import TextStart, machine_description, provenance, text_item_table  # noqa: E402
from keras_fame.training import fit_with_early_stopping  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = (
    "popularity", "id_only", "pca_start", "pca_frozen", "facet_frozen", "facet_bounded", "pca_dropout", "facet_dropout",
    "facet_dropout_scaled", "facets_dropout_scaled", "facets_id_only",
)
OFFSET_DROPOUT = 0.5


def evaluate_groups(score_fn, test, hidden):
    cold, warm = split_by_target(test, hidden)
    out = {}
    for name, rows in (("cold", cold), ("warm", warm), ("all", np.arange(len(test)))):
        out[name] = evaluate_ranking(score_fn, test.subset(rows), exclude_history=True)
    # Where the cold targets land: their rank among all items, and how far below the top.
    cold_set = test.subset(cold)
    scores = np.concatenate([score_fn(cold_set.inputs[i : i + 256]) for i in range(0, len(cold), 256)])
    scores = np.asarray(scores, np.float64)
    scores[:, 0] = -np.inf
    rows, cols = history_mask_rows(cold_set.history_indptr, cold_set.history_items, 0, len(cold))
    ranks = target_ranks(scores, cold_set.targets, exclude=(rows, cols))
    target = scores[np.arange(len(cold)), cold_set.targets]
    is_hidden = np.zeros(scores.shape[1], bool)
    is_hidden[hidden] = True
    # The cold-item task of the cold-start literature (e.g. DropoutNet): which of the new items will the
    # user pick? The target is ranked among the held-out items only (history excluded); chance HR@10 is
    # about 10 / held-out items.
    among = np.where(is_hidden[None, :], scores, -np.inf)
    out["cold_among_held_out"] = metrics_from_ranks(target_ranks(among, cold_set.targets, exclude=(rows, cols)))
    out["cold_diagnostics"] = {
        "target_rank_percentiles_10_50_90": np.percentile(ranks, [10, 50, 90]).tolist(),
        "rank_if_ranked_among_held_out_items_only_median": float(np.median(
            (scores[:, is_hidden] >= target[:, None]).sum(axis=1) - 1)),
        "mean_score_target": float(target.mean()),
        "mean_score_held_out_items": float(scores[:, is_hidden].mean()),
        "mean_score_trained_items": float(scores[:, 1:][:, ~is_hidden[1:]].mean()),
        "mean_10th_best_score": float(np.sort(scores, axis=1)[:, -10].mean()),
    }
    return out


def run_variant(variant, split, hidden, item_text_file, seed, epochs, patience, verbose, neighbours=10,
                item_facets=None):
    """Trains and evaluates one variant; `item_facets` (labels of every item) for the `facets_*` variants."""
    if variant == "popularity":
        scores = popularity_scores(split)
        return {"test": evaluate_groups(lambda x: np.tile(scores, (len(x), 1)), split.test, hidden)}
    keras.utils.set_random_seed(seed)
    table, report = None, None
    frozen = variant.endswith(("frozen", "bounded", "dropout", "scaled"))
    bound = None
    if not variant.endswith("id_only"):
        mode = "facet" if variant.startswith("facet") else "pca"
        text_start = TextStart(mode=mode, item_text_file=item_text_file, frozen=frozen)
        table, report = text_item_table(text_start, split.num_items, 64, 2, seed=seed, verbose=verbose)
        if variant.endswith("bounded"):
            bound = float(np.linalg.norm(table[1:], axis=1).mean())
            report["offset_max_norm"] = bound
        keras.utils.set_random_seed(seed)
    model = SASRec(
        split.num_items, hidden_dim=64, num_heads=2, dropout=0.3, item_content=frozen, item_embeddings=table,
        offset_max_norm=bound, offset_dropout=OFFSET_DROPOUT if "dropout" in variant else 0.0,
        learn_content_scale=variant.endswith("scaled"),
        item_facets=item_facets if variant.startswith("facets_") else None,
    )
    before = np.asarray(model.item_embedding.item_table())[hidden].copy()
    loss = MaskedSoftmaxCrossEntropy(excluded_items=hidden.tolist())
    training = fit_with_early_stopping(model, split, epochs=epochs, patience=patience, seed=seed, verbose=verbose, loss=loss)
    after = np.asarray(model.item_embedding.item_table())[hidden]
    layer = model.item_embedding
    if layer.item_content:
        trained = np.setdiff1d(np.arange(1, split.num_items + 1), hidden)
        scale = float(np.asarray(layer.content_scale)) if layer.learn_content_scale else 1.0
        offsets = np.asarray(layer.item_table()) - scale * np.asarray(layer.content_embeddings)
        norms = {
            "content_row_norm_mean": float(scale * np.linalg.norm(np.asarray(layer.content_embeddings)[1:], axis=1).mean()),
            "trained_offset_norm_mean": float(np.linalg.norm(offsets[trained], axis=1).mean()),
            "content_scale": scale,
        }
    else:
        norms = {"row_norm_mean": float(np.linalg.norm(np.asarray(layer.item_table())[1:], axis=1).mean())}
    scorer = model.scorer()
    result = {
        "training": training,
        "test": evaluate_groups(lambda x: scorer.predict_on_batch(x)["scores"], split.test, hidden),
        "held_out_rows_unchanged": bool(np.array_equal(before, after)),
        "table_norms": norms,
    }
    if report is not None:
        result["text_start"] = report
    if layer.item_content and neighbours:
        start = time.perf_counter()
        model.impute_offsets(hidden, neighbours=neighbours)
        result["neighbour_offsets"] = {"neighbours": neighbours, "seconds": time.perf_counter() - start}
        # The same scorer: it shares the model's variables, which `impute_offsets` assigned in place.
        result["test_neighbour_offsets"] = evaluate_groups(
            lambda x: scorer.predict_on_batch(x)["scores"], split.test, hidden
        )
    return result


def summary(out_dir):
    """A markdown table of every finished variant (cold / warm / all users, exclude_history)."""
    rows = []
    for name in sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else []:
        if name.endswith(".json") and os.path.isfile(os.path.join(out_dir, name)):
            with open(os.path.join(out_dir, name)) as f:
                rows.append(json.load(f))
    rows.sort(key=lambda r: (r["dataset"], r["seed"], VARIANTS.index(r["variant"])))
    lines = [
        "| data | seed | variant | cold users NDCG@10 / HR@10 | cold users, among held-out items: NDCG@10 / HR@10 "
        "| cold target median rank (of all) | warm users NDCG@10 / HR@10 | all users NDCG@10 / HR@10 | held-out rows unchanged |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        evaluations = [(r["variant"], r["test"])]
        if "test_neighbour_offsets" in r:
            k = r["neighbour_offsets"]["neighbours"]
            evaluations.append((f"{r['variant']}, held-out offsets from {k} text neighbours", r["test_neighbour_offsets"]))
        for name, t in evaluations:
            cells = [f"{t[g]['ndcg@10']:.4f} / {t[g]['hr@10']:.4f}" for g in ("cold", "cold_among_held_out", "warm", "all")]
            cells.insert(2, f"{t['cold_diagnostics']['target_rank_percentiles_10_50_90'][1]:.0f}")
            unchanged = r.get("held_out_rows_unchanged", "n/a") if t is r["test"] else "n/a (imputed)"
            lines.append(f"| {r['dataset']} | {r['seed']} | {name} | " + " | ".join(cells) + f" | {unchanged} |")
    if rows:
        r = rows[0]
        lines.append(
            f"\n{r['held_out_items']} held-out items ({r['fraction']:.0%}); {r['cold_users']} cold and {r['warm_users']} warm test users."
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summary", action="store_true", help="print the table of finished variants and exit")
    parser.add_argument("--dataset", choices=("toys", "beauty"), default="toys")
    parser.add_argument("--data-dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--neighbours", type=int, default=10,
                        help="k of the second evaluation with imputed held-out offsets (0: skip it)")
    parser.add_argument("--out-dir", default=os.path.join(ROOT, "results", "cold_start"))
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args(argv)
    if args.summary:
        print(summary(args.out_dir))
        return 0

    path = find_sequence_file(args.dataset, args.data_dir)
    if path is None:
        print(f"error: {args.dataset} data not found (--data-dir or FAME_DATA_DIR)", file=sys.stderr)
        return 2
    data = read_sequences(path)
    hidden = hold_out_items(data.num_items, args.fraction, seed=args.seed)
    kept = remove_items(data, hidden)
    split = leave_one_out(kept, max_len=50)
    cold, warm = split_by_target(split.test, hidden)
    print(f"{args.dataset}: {len(hidden)} held-out items, {len(kept.user_ids)} of {data.num_users} users kept, "
          f"{len(cold)} cold and {len(warm)} warm test users", flush=True)
    item_text_file = os.path.join(os.path.dirname(path), ITEM_TEXT_FILES[args.dataset])
    facets = read_item_facets(attribute_file_beside(path), data.num_items, ("brand", "category_leaf"))
    os.makedirs(args.out_dir, exist_ok=True)
    for variant in args.variants:
        out = os.path.join(args.out_dir, f"{args.dataset}-seed{args.seed}-{variant}.json")
        if os.path.isfile(out):
            print(f"skip {variant}: {out} exists", flush=True)
            continue
        print(f"\n== {variant} ==", flush=True)
        start = time.perf_counter()
        result = run_variant(
            variant, split, hidden, item_text_file, args.seed, args.epochs, args.patience, args.verbose, args.neighbours,
            item_facets=facets.labels,
        )
        result.update(
            dataset=args.dataset, seed=args.seed, variant=variant, fraction=args.fraction,
            held_out_items=len(hidden), cold_users=len(cold), warm_users=len(warm),
            wall_seconds=time.perf_counter() - start, machine=machine_description(),
            command=f"python benchmarks/cold_start.py --dataset {args.dataset} --seed {args.seed} --variants {variant} "
            f"--epochs {args.epochs} --patience {args.patience} --neighbours {args.neighbours}",
            provenance=provenance(),
        )
        if variant.startswith("facets_"):
            result["item_facets"] = facets.summary()
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=2)
        os.replace(tmp, out)
        t = result["test"]
        for name, t in (("", t), (" (neighbour offsets)", result.get("test_neighbour_offsets"))):
            if t is not None:
                print(f"{variant}{name}: cold NDCG@10 {t['cold']['ndcg@10']:.4f} HR@10 {t['cold']['hr@10']:.4f} | "
                      f"warm NDCG@10 {t['warm']['ndcg@10']:.4f} | all {t['all']['ndcg@10']:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
