"""The paper's training pipeline (§4.4.2) as plain functions over `model.fit`.

`fit_with_early_stopping` trains one model with the full-ranking validation
callback and early stopping on validation NDCG@10; `run_pipeline` chains
SASRec -> transplant -> FAME fine-tuning and evaluates both on the test set
with both history protocols. The examples are thin wrappers over it.
"""

import json
import os
import platform
import time

import keras

from keras_fame.data import TrainingBatches, leave_one_out, read_sequences
from keras_fame.evaluation import FullRankingEvaluation, evaluate_model
from keras_fame.models import FAME, SASRec

# Paper Table 2, FAME row (HR@5, HR@10, HR@20, NDCG@5, NDCG@10, NDCG@20).
PAPER_FAME = {
    "beauty": dict(zip(
        ["hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20"],
        [0.0710, 0.0978, 0.1345, 0.0508, 0.0593, 0.0687],
    )),
    "sports": dict(zip(
        ["hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20"],
        [0.0400, 0.0580, 0.0820, 0.0277, 0.0337, 0.0402],
    )),
    "toys": dict(zip(
        ["hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20"],
        [0.0820, 0.1065, 0.1409, 0.0603, 0.0681, 0.0759],
    )),
}
METRIC_ORDER = ["hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20"]


class EpochTimer(keras.callbacks.Callback):
    """Records the wall time of every training epoch (evaluation excluded)."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        # Runs first in the list, so validation time is not counted.
        self.seconds.append(time.perf_counter() - self._start)


def fit_with_early_stopping(
    model,
    split,
    epochs=200,
    batch_size=256,
    patience=10,
    every_n_epochs=1,
    learning_rate=1e-3,
    seed=0,
    verbose=1,
    exclude_history=True,
    monitor="val_ndcg@10",
):
    """Trains `model` with `fit` until validation NDCG@10 stops improving.

    The best epoch's weights are restored. Returns a dict with the epochs
    run, the best epoch, its validation metrics and per-epoch seconds.
    """
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.9, beta_2=0.999))
    batches = TrainingBatches(split.train_inputs, split.train_targets, batch_size=batch_size, seed=seed)
    timer = EpochTimer()
    evaluation = FullRankingEvaluation(
        split.validation, every_n_epochs=every_n_epochs, exclude_history=exclude_history, verbose=verbose
    )
    stopper = keras.callbacks.EarlyStopping(
        monitor=monitor, mode="max", patience=patience, restore_best_weights=True, verbose=verbose
    )
    start = time.perf_counter()
    model.fit(batches, epochs=epochs, callbacks=[timer, evaluation, stopper], verbose=verbose)
    wall = time.perf_counter() - start
    best_epoch, best = max(evaluation.history, key=lambda item: item[1][monitor.removeprefix("val_")])
    return {
        "epochs_run": len(timer.seconds),
        "best_epoch": best_epoch + 1,
        "best_validation": best,
        "seconds_per_epoch": timer.seconds,
        "wall_seconds": wall,
    }


def evaluate_test_set(model, split):
    """Test metrics under both protocols."""
    scorer = model.scorer()
    return {
        "exclude_history": evaluate_model(model, split.test, exclude_history=True, scorer=scorer),
        "all_items": evaluate_model(model, split.test, exclude_history=False, scorer=scorer),
    }


def machine_description():
    backend = keras.backend.backend()
    device = "cpu"
    if backend == "jax":
        import jax

        device = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    return {
        "backend": backend,
        "device": device,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "keras": keras.__version__,
    }


def format_comparison(dataset, rows):
    """A text table of `{label: metrics}` rows beside the paper's FAME row."""
    header = f"{'model':<34}" + "".join(f"{m:>9}" for m in METRIC_ORDER)
    lines = [header, "-" * len(header)]
    for label, metrics in rows.items():
        lines.append(f"{label:<34}" + "".join(f"{metrics[m]:>9.4f}" for m in METRIC_ORDER))
    paper = PAPER_FAME.get(dataset)
    if paper:
        lines.append(f"{'paper FAME (Table 2)':<34}" + "".join(f"{paper[m]:>9.4f}" for m in METRIC_ORDER))
    return "\n".join(lines)


def run_pipeline(
    sequence_file,
    dataset,
    output_dir,
    hidden_dim=64,
    num_heads=2,
    num_experts=4,
    num_blocks=2,
    max_len=50,
    dropout=0.2,
    sasrec_heads=None,
    epochs=200,
    fame_epochs=None,
    learning_rate=1e-3,
    batch_size=256,
    patience=10,
    every_n_epochs=1,
    seed=0,
    verbose=1,
    skip_fame=False,
    sasrec_model=None,
    fame_warmup_epochs=0,
    fame_dropout=None,
    item_projection_initializer=None,
):
    """SASRec -> transplant -> FAME fine-tuning -> test metrics, as in §4.4.2.

    Writes `sasrec.keras`, `fame.keras` and `results.json` (rewritten after
    each stage) to `output_dir` and returns the results dict. With
    `sasrec_model` (a `.keras` path) the SASRec stage is loaded, not trained.
    `fame_warmup_epochs > 0` first trains FAME's fresh parts alone (our
    addition; the paper fine-tunes everything from the start).
    """
    keras.utils.set_random_seed(seed)
    os.makedirs(output_dir, exist_ok=True)
    data = read_sequences(sequence_file)
    split = leave_one_out(data, max_len=max_len)
    results = {
        "dataset": dataset,
        "data": data.stats(),
        "train_positions": split.num_train_positions,
        "config": {
            "hidden_dim": hidden_dim,
            "num_heads": num_heads,
            "num_experts": num_experts,
            "num_blocks": num_blocks,
            "max_len": max_len,
            "dropout": dropout,
            "sasrec_heads": sasrec_heads or num_heads,
            "learning_rate": learning_rate,
            "batch_size": batch_size,
            "patience": patience,
            "seed": seed,
            "fame_warmup_epochs": fame_warmup_epochs,
        },
        "machine": machine_description(),
        "paper_fame": PAPER_FAME.get(dataset),
    }

    def save_results():
        with open(os.path.join(output_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)

    if sasrec_model is not None:
        sasrec = keras.saving.load_model(sasrec_model, safe_mode=True)
        if sasrec.num_items != data.num_items or sasrec.max_len != max_len:
            raise ValueError(f"{sasrec_model}: built for {sasrec.num_items} items / max_len {sasrec.max_len}")
        results["sasrec"] = {"loaded_from": os.path.abspath(sasrec_model)}
        results["config"].update(hidden_dim=sasrec.hidden_dim, num_blocks=sasrec.num_blocks, sasrec_heads=sasrec.num_heads)
    else:
        sasrec = SASRec(
            data.num_items,
            hidden_dim=hidden_dim,
            num_blocks=num_blocks,
            num_heads=sasrec_heads or num_heads,
            max_len=max_len,
            dropout=dropout,
        )
        print(f"\n== SASRec on {dataset}: {data.num_users} users, {data.num_items} items ==")
        results["sasrec"] = {
            "training": fit_with_early_stopping(
                sasrec, split, epochs, batch_size, patience, every_n_epochs, learning_rate, seed, verbose
            )
        }
        sasrec.save(os.path.join(output_dir, "sasrec.keras"))
    results["sasrec"]["test"] = evaluate_test_set(sasrec, split)
    save_results()
    rows = {"SASRec (ours, exclude history)": results["sasrec"]["test"]["exclude_history"]}

    if not skip_fame:
        fame = FAME.from_sasrec(
            sasrec, num_heads=num_heads, num_experts=num_experts, dropout=fame_dropout, seed=seed,
            item_projection_initializer=item_projection_initializer,
        )
        results["config"]["fame_dropout"] = fame.dropout
        results["config"]["item_projection_initializer"] = fame.get_config()["item_projection_initializer"]
        results["fame"] = {}
        if fame_warmup_epochs:
            # Not in the paper: train only the fresh parts first, so their
            # random start does not disturb the transplanted weights.
            copied = [fame.item_embedding, *fame.transformer_blocks]
            for layer in copied:
                layer.trainable = False
            print(f"\n== FAME warm-up: {fame_warmup_epochs} epochs with the transplanted layers frozen ==")
            results["fame"]["warmup"] = fit_with_early_stopping(
                fame, split, fame_warmup_epochs, batch_size, fame_warmup_epochs, every_n_epochs, learning_rate, seed,
                verbose,
            )
            for layer in copied:
                layer.trainable = True
        print(f"\n== FAME (H={num_heads}, N={num_experts}) fine-tuned from SASRec ==")
        results["fame"]["training"] = fit_with_early_stopping(
            fame, split, fame_epochs or epochs, batch_size, patience, every_n_epochs, learning_rate, seed, verbose
        )
        results["fame"]["test"] = evaluate_test_set(fame, split)
        fame.save(os.path.join(output_dir, "fame.keras"))
        save_results()
        rows[f"FAME H={num_heads} N={num_experts} (exclude hist.)"] = results["fame"]["test"]["exclude_history"]
        rows[f"FAME H={num_heads} N={num_experts} (all items)"] = results["fame"]["test"]["all_items"]

    table = format_comparison(dataset, rows)
    results["table"] = table
    print("\nTest set, full ranking over all items (leave-one-out):\n" + table)
    save_results()
    return results
