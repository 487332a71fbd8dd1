"""What the pre-trainer's heads learn: per-head facet agreement, time and loss, against PCA.

    python benchmarks/facet_structure.py --out results/facet_structure.json

For each dataset and head count H (2: brand, leaf; 4: brand, level 1,
level 2, leaf) it runs `pretrain_item_embeddings` (d = 64) and reports,
for every facet, how often an item's nearest neighbour (cosine) in each
head's slice of the table shares its label, beside the same measure on the
PCA start's slices of equal width, on the raw text embeddings, and chance
(two random items sharing the label). This is agreement on the labels the
heads were trained with (the catalog is the whole population; there is no
held-out item set), so it shows the facet structure, not generalisation.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_fame.data.registry import ITEM_TEXT_FILES, find_sequence_file  # noqa: E402
from keras_fame.data import read_item_text, read_sequences  # noqa: E402
from keras_fame.pretraining import (  # noqa: E402
    embed_texts,
    nearest_neighbour_agreement,
    pca_item_table,
    pretrain_item_embeddings,
    with_padding_row,
)
from keras_fame.experiments import provenance  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["toys", "beauty"])
    parser.add_argument("--heads", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.1])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--data-dir")
    parser.add_argument("--cache-dir", default=".cache/text")
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    # provenance()'s `command` and `machine` are the keys this file always had (command, machine_description()).
    report = {**provenance(["benchmarks/facet_structure.py", *(argv or sys.argv[1:])]), "runs": []}
    for dataset in args.datasets:
        path = find_sequence_file(dataset, args.data_dir)
        if path is None:
            print(f"error: {dataset} data not found", file=sys.stderr)
            return 2
        num_items = read_sequences(path).num_items
        text = read_item_text(os.path.join(os.path.dirname(path), ITEM_TEXT_FILES[dataset]), num_items=num_items)
        start = time.perf_counter()
        features = embed_texts(text.texts[1:], cache_dir=args.cache_dir, verbose=0)
        load_seconds = time.perf_counter() - start
        pca = pca_item_table(features, 64)
        raw = with_padding_row(features)
        for heads in args.heads:
            labels = text.head_labels(heads)
            for temperature in args.temperatures:
                table, pre = pretrain_item_embeddings(features, labels, 64, epochs=args.epochs, verbose=0, temperature=temperature)
                rows = {}
                for h, facet in enumerate(pre["facets"]):
                    agreement = pre["nearest_neighbour_label_agreement"][f"head_{h}_{facet}"]
                    pca_slices, _ = nearest_neighbour_agreement(pca, labels[:, h], heads)
                    raw_all, _ = nearest_neighbour_agreement(raw, labels[:, h], 1)
                    rows[f"head_{h}_{facet}"] = {
                        "pretrained_own_head": agreement["own_head"],
                        "pretrained_other_heads_mean": float(np.mean([a for i, a in enumerate(agreement["all_heads"]) if i != h])),
                        "pca_same_slice": pca_slices[h],
                        "raw_text_384d": raw_all[0],
                        "chance": agreement["chance"],
                    }
                run = {
                    "dataset": dataset, "heads": heads, "temperature": temperature, "epochs": args.epochs,
                    "pretraining_seconds": pre["seconds"], "loss_first_last": [pre["loss"][0], pre["loss"][-1]],
                    "text_embeddings_cached_load_seconds": load_seconds, "agreement": rows,
                }
                report["runs"].append(run)
                print(json.dumps(run, indent=1), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
