"""The paper's training pipeline (§4.4.2) as plain functions over `model.fit`.

`fit_with_early_stopping` trains one model with the full-ranking validation
callback and early stopping on validation NDCG@10; `run_pipeline` chains
SASRec -> transplant -> FAME fine-tuning and evaluates both on the test set
with both history protocols. The examples are thin wrappers over it.
"""

import dataclasses
import json
import os
import platform
import shutil
import time

import keras
import numpy as np

from keras_fame.data import TrainingBatches, every_prefix_rows, leave_one_out, read_sequences
from keras_fame.evaluation import FullRankingEvaluation, GateHistograms, evaluate_model
from keras_fame.models import FAME, SASRec
from keras_fame.utils import replace_atomically, save_model_atomic, set_deterministic

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

    RESUME_STATE = ("seconds",)  # restored by `TrainingCheckpoint`

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        # Runs first in the list, so validation time is not counted.
        self.seconds.append(time.perf_counter() - self._start)


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training at the first NaN/inf loss with an error naming the stage, epoch and batch.

    Keras' `TerminateOnNaN` only sets `stop_training` and logs a line; the
    epoch-end callbacks (our validation) then still run on broken weights.
    This raises `FloatingPointError` at the batch itself, so nothing is
    evaluated or saved from a diverged model.
    """

    def __init__(self, stage="training"):
        super().__init__()
        self.stage = stage
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.model.stop_training = True
            raise FloatingPointError(
                f"{self.stage}: the training loss became {float(loss)} at epoch {self._epoch + 1}, batch {batch + 1}; "
                "training stopped (lower the learning rate, or check the data and the item table)"
            )


class TrainingCheckpoint(keras.callbacks.BackupAndRestore):
    """Checkpoints everything a killed `fit` needs to continue as if never stopped.

    Keras' `BackupAndRestore` saves the weights with the optimizer state and
    the epoch, which is what a resumed `fit` needs from the model. It leaves
    out the rest of the training state, which this subclass adds at the end
    of every epoch:

    - the seed-generator states (dropout masks), which `save_weights` skips;
    - the state of the stateful callbacks passed in: `EarlyStopping` (best
      value, best epoch, patience count and best weights), and any callback
      with a `RESUME_STATE` tuple of attribute names (`EpochTimer`,
      `FullRankingEvaluation`);

    The data must depend on the epoch number only, as `TrainingBatches`
    does when told the epoch (`fit_with_early_stopping` does this).

    Each checkpoint is a new folder `epoch-NNNN` written in full, then named
    in the file `latest` by an atomic rename, so a kill at any moment leaves
    the previous checkpoint usable (Keras' own writes its files in place).
    Put it **last** in the callback list: its `on_train_begin` restores
    after the others have reset themselves, and its `on_epoch_end` saves
    after they have updated. The folder is removed when `fit` ends
    normally, as with `BackupAndRestore(delete_checkpoint=True)`.

    Args:
        backup_dir: folder of the checkpoints (one per training stage).
        callbacks: the stateful callbacks to save and restore.
    """

    def __init__(self, backup_dir, callbacks=()):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=True, double_checkpoint=False)
        self.callbacks = list(callbacks)
        self.resumed_epoch = 0

    def _latest(self):
        pointer = os.path.join(self.backup_dir, "latest")
        if not os.path.isfile(pointer):
            return None
        with open(pointer) as f:
            folder = os.path.join(self.backup_dir, f.read().strip())
        return folder if os.path.isdir(folder) else None

    def _extra_variables(self):
        # Variables that `save_weights` leaves out: the seed generators' states.
        saved = {id(v) for v in self.model.weights}
        return [v for v in self.model.variables if id(v) not in saved]

    def on_train_begin(self, logs=None):
        self.resumed_epoch = 0
        folder = self._latest()
        if folder is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(folder, "model.weights.h5"))
        with open(os.path.join(folder, "state.json")) as f:
            state = json.load(f)
        arrays = np.load(os.path.join(folder, "arrays.npz"))
        extra = self._extra_variables()
        if len(extra) != state["extra_variables"]:
            raise ValueError(f"{folder}: the checkpoint is of a different model ({state['extra_variables']} extra variables, not {len(extra)})")
        for i, variable in enumerate(extra):
            variable.assign(arrays[f"extra_{i}"])
        for i, (callback, saved) in enumerate(zip(self.callbacks, state["callbacks"])):
            for name, value in saved.items():
                setattr(callback, name, value)
            if isinstance(callback, keras.callbacks.EarlyStopping) and state["has_best_weights"][i]:
                count = state["has_best_weights"][i]
                callback.best_weights = [arrays[f"best_{i}_{j}"] for j in range(count)]
        self.resumed_epoch = state["epoch"]
        self.model._initial_epoch = self.resumed_epoch
        self._current_epoch = self.resumed_epoch

    def _save_model(self):
        extra = self._extra_variables()
        arrays = {f"extra_{i}": np.asarray(v) for i, v in enumerate(extra)}
        saved, best_counts = [], []
        for i, callback in enumerate(self.callbacks):
            if isinstance(callback, keras.callbacks.EarlyStopping):
                names = ("wait", "stopped_epoch", "best", "best_epoch")
                weights = callback.best_weights or []
                arrays.update({f"best_{i}_{j}": np.asarray(w) for j, w in enumerate(weights)})
                best_counts.append(len(weights))
            else:
                names = getattr(callback, "RESUME_STATE", ())
                best_counts.append(0)
            saved.append({name: getattr(callback, name) for name in names})
        state = {
            "epoch": self._current_epoch,
            "extra_variables": len(extra),
            "callbacks": saved,
            "has_best_weights": best_counts,
        }
        name = f"epoch-{self._current_epoch:04d}"
        folder = os.path.join(self.backup_dir, name)
        tmp = folder + f".tmp-{os.getpid()}"
        os.makedirs(tmp, exist_ok=True)
        self.model.save_weights(os.path.join(tmp, "model.weights.h5"), overwrite=True)
        np.savez(os.path.join(tmp, "arrays.npz"), **arrays)
        with open(os.path.join(tmp, "state.json"), "w") as f:
            json.dump(state, f, default=_json_default)
        if os.path.isdir(folder):  # a leftover of a run killed before `latest` moved on
            shutil.rmtree(folder)
        os.replace(tmp, folder)

        def point(path):
            with open(path, "w") as f:
                f.write(name)

        replace_atomically(os.path.join(self.backup_dir, "latest"), point)
        for old in os.listdir(self.backup_dir):
            if old.startswith("epoch-") and old != name:
                shutil.rmtree(os.path.join(self.backup_dir, old), ignore_errors=True)

    def on_train_end(self, logs=None):
        self.model._initial_epoch = None  # a later `fit` of this model starts at its own epoch 0
        super().on_train_end(logs)


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
    loss=None,
    every_prefix=False,
    stage="training",
    checkpoint_dir=None,
    tensorboard_dir=None,
):
    """Trains `model` with `fit` until the validation `monitor` stops improving.

    The best epoch's weights are restored. Returns a dict with the epochs
    run, the best epoch, its validation metrics and per-epoch seconds.
    `loss` defaults to the model's (full-softmax CE); pass e.g.
    `MaskedSoftmaxCrossEntropy(excluded_items=...)`. `every_prefix=True`
    trains on one row per (prefix, next item) pair with the loss at the last
    position (`keras_fame.data.every_prefix_rows`). A NaN or infinite loss
    stops training and raises `FloatingPointError` naming `stage` and the
    epoch. With `checkpoint_dir`, every epoch is checkpointed there
    (`TrainingCheckpoint`) and a call after a kill continues from the last
    finished epoch, as if never stopped; the folder is removed when training
    ends. With `tensorboard_dir`, Keras' `TensorBoard` logs the loss and
    validation metrics and, for FAME, `GateHistograms` the gate and router
    weights of 512 validation users, under `tensorboard_dir/<stage>`.
    """
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.9, beta_2=0.999), loss=loss)
    inputs, targets = split.train_inputs, split.train_targets
    if every_prefix:
        inputs, targets = every_prefix_rows(inputs, targets)
    batches = TrainingBatches(inputs, targets, batch_size=batch_size, seed=seed)
    timer = EpochTimer()
    evaluation = FullRankingEvaluation(
        split.validation, every_n_epochs=every_n_epochs, exclude_history=exclude_history, verbose=verbose
    )
    stopper = keras.callbacks.EarlyStopping(
        monitor=monitor, mode="max", patience=patience, restore_best_weights=True, verbose=verbose
    )
    guard = NonFiniteLossGuard(stage)
    callbacks = [guard, timer, evaluation, stopper]
    if tensorboard_dir is not None:
        log_dir = os.path.join(tensorboard_dir, stage.lower())
        callbacks[3:3] = [  # after the evaluation, whose metrics they read
            keras.callbacks.TensorBoard(log_dir=log_dir),
            GateHistograms(log_dir, split.validation.inputs[:512]),
        ]
    # Epoch e's batches are planned from (seed, e), told by the trainer's own epoch number: counting
    # `on_epoch_end` calls is off by one (`fit` calls it once before the first epoch) and would not
    # survive a resume.
    callbacks.insert(0, keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: batches.set_epoch(epoch)))
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = TrainingCheckpoint(checkpoint_dir, callbacks=[timer, evaluation, stopper])
        callbacks.append(checkpoint)
    start = time.perf_counter()
    # shuffle=False: `TrainingBatches` shuffles rows and batch order itself, from (seed, epoch);
    # Keras' own batch shuffle would draw from Python's global `random`, which a resumed run cannot replay.
    model.fit(batches, epochs=epochs, callbacks=callbacks, verbose=verbose, shuffle=False)
    wall = time.perf_counter() - start
    best_epoch, best = max(evaluation.history, key=lambda item: item[1][monitor.removeprefix("val_")])
    return {
        "epochs_run": len(timer.seconds),
        "best_epoch": best_epoch + 1,
        "best_validation": best,
        "seconds_per_epoch": timer.seconds,
        "wall_seconds": wall,
        **({"resumed_from_epoch": checkpoint.resumed_epoch} if checkpoint and checkpoint.resumed_epoch else {}),
    }


def write_json_atomic(path, obj):
    """JSON through `replace_atomically` (never a half-written file under `path`)."""

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=_json_default)

    replace_atomically(path, write)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


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


@dataclasses.dataclass(frozen=True)
class TextStart:
    """How the item table starts from item text (FAME+, `keras_fame.pretraining`).

    Attributes:
        mode: `"pca"` (PCA of the text embeddings, the plain start) or
            `"facet"` (`FacetContrastivePretrainer`, alternating SupCon per
            facet; one head per SASRec/FAME head).
        frozen: keep the text table frozen and learn a per-item ID offset
            (`item_content=True`) instead of training the table from the
            text start.
        item_text_file: the `*_item_text.jsonl` file.
        cache_dir: where text embeddings are cached.
        epochs, temperature, head_layers, head_hidden_dim, learning_rate:
            of the facet pre-training.
        whiten: PCA only: equalise the components' variances.
    """

    mode: str
    item_text_file: str
    frozen: bool = False
    cache_dir: str = ".cache/text"
    epochs: int = 20
    temperature: float = 0.1
    head_layers: int = 1
    head_hidden_dim: int = 256
    learning_rate: float = 1e-3
    whiten: bool = False

    def __post_init__(self):
        if self.mode not in ("pca", "facet"):
            raise ValueError(f"text start mode {self.mode!r} is not 'pca' or 'facet'")


def text_item_table(text_start, num_items, hidden_dim, num_heads, seed=0, verbose=1, encoder=None, save_pretrainer=None):
    """Reads item text, embeds it (cached) and builds the `[num_items + 1, d]` start table.

    `encoder` is passed to `embed_texts` (default: all-MiniLM-L6-v2). With
    `save_pretrainer` (a `.keras` path) the trained pre-trainer is saved
    there, to embed items added later (`add_items_from_text`).

    Returns:
        `(table, report)`; the report holds the text statistics, the
        encoder's time, and for `"facet"` the pre-training's time, loss
        and per-head label agreement.
    """
    from keras_fame.data.item_text import read_item_text
    from keras_fame.pretraining import embed_texts, pca_item_table, pretrain_item_embeddings

    item_text = read_item_text(text_start.item_text_file, num_items=num_items)
    start = time.perf_counter()
    features = embed_texts(item_text.texts[1:], encoder=encoder, cache_dir=text_start.cache_dir, verbose=verbose)
    report = {
        "item_text_file": os.path.abspath(text_start.item_text_file),
        "attribute_only_items": len(item_text.attribute_only),
        "facet_coverage": item_text.coverage(),
        "text_embedding_seconds": time.perf_counter() - start,
        "text_dim": int(features.shape[1]),
    }
    if text_start.mode == "pca":
        table = pca_item_table(features, hidden_dim, whiten=text_start.whiten)
    else:
        table, report["pretraining"], pretrainer = pretrain_item_embeddings(
            features,
            item_text.head_labels(num_heads),
            hidden_dim,
            epochs=text_start.epochs,
            learning_rate=text_start.learning_rate,
            seed=seed,
            verbose=2 if verbose else 0,
            temperature=text_start.temperature,
            head_layers=text_start.head_layers,
            head_hidden_dim=text_start.head_hidden_dim,
            return_model=True,
        )
        if save_pretrainer:
            save_model_atomic(pretrainer, save_pretrainer)
            report["pretrainer"] = os.path.abspath(save_pretrainer)
    return table, report


def _finished_stages(results_path, config):
    """The stages a previous run of this configuration finished (from its `results.json`), by name."""
    if not os.path.isfile(results_path):
        return {}
    try:
        with open(results_path) as f:
            previous = json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f"{results_path}: unreadable ({error}); remove it or start over with resume=False") from error
    now = json.loads(json.dumps(config, default=_json_default))
    before = {key: previous.get("config", {}).get(key) for key in now}
    changed = sorted(key for key in now if before[key] != now[key])
    if changed:
        raise ValueError(
            f"{results_path} is from a run with a different configuration ({', '.join(changed)} differ); "
            "use another output folder, or start over (resume=False, --fresh)"
        )
    done = {"config": previous["config"]}
    for stage in ("text_start", "sasrec", "fame"):
        if stage in previous and (stage == "text_start" or "test" in previous[stage]):
            done[stage] = previous[stage]
    return done


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
    text_start=None,
    text_encoder=None,
    backbone=None,
    every_prefix=False,
    monitor="val_ndcg@10",
    deterministic=False,
    resume=True,
    tensorboard_dir=None,
):
    """SASRec -> transplant -> FAME fine-tuning -> test metrics, as in §4.4.2.

    Writes `sasrec.keras`, `fame.keras` and `results.json` (rewritten after
    each stage) to `output_dir` and returns the results dict. With
    `sasrec_model` (a `.keras` path) the SASRec stage is loaded, not trained.
    `fame_warmup_epochs > 0` first trains FAME's fresh parts alone (our
    addition; the paper fine-tunes everything from the start).
    `text_start` (a `TextStart`) starts SASRec's item table from item text
    (FAME inherits it through the transplant); its time and loss go into
    `results["text_start"]`; `text_encoder` replaces the default MiniLM
    (see `keras_fame.pretraining.embed_texts`). `backbone` holds extra SASRec
    constructor arguments (`activation`, `intermediate_dim`,
    `kernel_initializer`, `layer_norm_epsilon`), which FAME inherits;
    `every_prefix` and `monitor` go to `fit_with_early_stopping`.
    `deterministic` turns on `keras_fame.utils.set_deterministic` (same seed,
    machine and backend -> the same metrics).

    Resuming (`resume=True`, the default): each training stage checkpoints
    every epoch under `output_dir/checkpoints/<stage>` (`TrainingCheckpoint`),
    and the stages already finished are recorded in `results.json` with
    their model saved. Calling again with the same arguments after a kill
    (or after it finished) skips the finished stages (the text table is
    kept in `text_table.npy`) and continues the stage that was running from
    its last finished epoch; in deterministic mode the final metrics equal
    those of an uninterrupted run. A `results.json` from a different
    configuration raises `ValueError` rather than being mixed in.
    `resume=False` starts over. `tensorboard_dir` logs each stage for
    TensorBoard (see `fit_with_early_stopping`).
    """
    if deterministic:
        set_deterministic(seed)
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
            "text_start": dataclasses.asdict(text_start) if text_start else None,
            "backbone": dict(backbone or {}),
            "every_prefix": every_prefix,
            "monitor": monitor,
            "deterministic": deterministic,
        },
        "machine": machine_description(),
        "paper_fame": PAPER_FAME.get(dataset),
    }
    results_path = os.path.join(output_dir, "results.json")
    checkpoints = os.path.join(output_dir, "checkpoints")
    done = _finished_stages(results_path, results["config"]) if resume else {}
    if not resume and os.path.isdir(checkpoints):
        shutil.rmtree(checkpoints)
    sasrec_path, fame_path = os.path.join(output_dir, "sasrec.keras"), os.path.join(output_dir, "fame.keras")
    table_path = os.path.join(output_dir, "text_table.npy")

    def save_results():
        write_json_atomic(results_path, results)

    if not os.path.isfile(results_path) or not resume:
        save_results()  # the configuration is on disk before any checkpoint, so a changed rerun is caught

    if sasrec_model is not None:
        sasrec = keras.saving.load_model(sasrec_model, safe_mode=True)
        if sasrec.num_items != data.num_items or sasrec.max_len != max_len:
            raise ValueError(f"{sasrec_model}: built for {sasrec.num_items} items / max_len {sasrec.max_len}")
        results["sasrec"] = {"loaded_from": os.path.abspath(sasrec_model)}
        results["config"].update(hidden_dim=sasrec.hidden_dim, num_blocks=sasrec.num_blocks, sasrec_heads=sasrec.num_heads)
    elif "sasrec" in done and os.path.isfile(sasrec_path):
        print(f"\n== SASRec: finished before, loaded from {sasrec_path} ==")
        sasrec = keras.saving.load_model(sasrec_path, safe_mode=True)
        results["sasrec"] = done["sasrec"]
        if "text_start" in done:
            results["text_start"] = done["text_start"]
    else:
        table = None
        if text_start is not None and "text_start" in done and os.path.isfile(table_path):
            print(f"\n== Text start: finished before, loaded from {table_path} ==")
            table, results["text_start"] = np.load(table_path), done["text_start"]
        elif text_start is not None:
            heads = sasrec_heads or num_heads
            print(f"\n== Text start ({text_start.mode}, frozen={text_start.frozen}) for {data.num_items} items ==")
            table, results["text_start"] = text_item_table(
                text_start, data.num_items, hidden_dim, heads, seed=seed, verbose=verbose, encoder=text_encoder,
                save_pretrainer=os.path.join(output_dir, "pretrainer.keras"),
            )
            replace_atomically(table_path, lambda tmp: np.save(tmp, table), suffix=".npy")
            save_results()
        keras.utils.set_random_seed(seed)  # the sequence model starts as it would without the text stage
        sasrec = SASRec(
            data.num_items,
            hidden_dim=hidden_dim,
            num_blocks=num_blocks,
            num_heads=sasrec_heads or num_heads,
            max_len=max_len,
            dropout=dropout,
            item_content=bool(text_start and text_start.frozen),
            item_embeddings=table,
            **(backbone or {}),
        )
        print(f"\n== SASRec on {dataset}: {data.num_users} users, {data.num_items} items ==")
        results["sasrec"] = {
            "training": fit_with_early_stopping(
                sasrec, split, epochs, batch_size, patience, every_n_epochs, learning_rate, seed, verbose,
                monitor=monitor, every_prefix=every_prefix, stage="SASRec",
                checkpoint_dir=os.path.join(checkpoints, "sasrec") if resume else None, tensorboard_dir=tensorboard_dir,
            )
        }
        save_model_atomic(sasrec, sasrec_path)
    if "test" not in results["sasrec"]:
        results["sasrec"]["test"] = evaluate_test_set(sasrec, split)
    save_results()
    rows = {"SASRec (ours, exclude history)": results["sasrec"]["test"]["exclude_history"]}

    if not skip_fame and "fame" in done and os.path.isfile(fame_path):
        print(f"\n== FAME: finished before, loaded from {fame_path} ==")
        fame = keras.saving.load_model(fame_path, safe_mode=True)
        results["fame"] = done["fame"]
        for key in ("fame_dropout", "item_projection_initializer"):
            results["config"][key] = done["config"][key]
    elif not skip_fame:
        keras.utils.set_random_seed(seed)  # FAME's fresh parts start the same whether SASRec was trained or loaded
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
                verbose, checkpoint_dir=os.path.join(checkpoints, "fame_warmup") if resume else None,
            )
            for layer in copied:
                layer.trainable = True
        print(f"\n== FAME (H={num_heads}, N={num_experts}) fine-tuned from SASRec ==")
        results["fame"]["training"] = fit_with_early_stopping(
            fame, split, fame_epochs or epochs, batch_size, patience, every_n_epochs, learning_rate, seed, verbose,
            monitor=monitor, every_prefix=every_prefix, stage="FAME",
            checkpoint_dir=os.path.join(checkpoints, "fame") if resume else None, tensorboard_dir=tensorboard_dir,
        )
        results["fame"]["test"] = evaluate_test_set(fame, split)
        save_model_atomic(fame, fame_path)
        save_results()
    if not skip_fame:
        rows[f"FAME H={num_heads} N={num_experts} (exclude hist.)"] = results["fame"]["test"]["exclude_history"]
        rows[f"FAME H={num_heads} N={num_experts} (all items)"] = results["fame"]["test"]["all_items"]

    table = format_comparison(dataset, rows)
    results["table"] = table
    print("\nTest set, full ranking over all items (leave-one-out):\n" + table)
    save_results()
    return results
