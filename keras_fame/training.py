"""Training one model with `model.fit`: early stopping on full-ranking validation, resume after a kill.

`fit_with_early_stopping` trains one model with the full-ranking validation
callback and early stopping on validation NDCG@10, checkpointing every epoch
(`TrainingCheckpoint`) when asked; `evaluate_test_set` gives the test metrics
under both history protocols. The paper's staged pipeline (text start ->
SASRec -> transplant -> FAME) is the experiment harness's
(`keras_fame.experiments.run_pipeline`), built on these.
"""

import json
import os
import shutil
import time

import keras
import numpy as np

from keras_fame.data import TrainingBatches, every_prefix_rows
from keras_fame.evaluation import FullRankingEvaluation, GateHistograms, evaluate_model
from keras_fame.evaluation.head_diagnostics import HeadDiagnostics
from keras_fame.losses import MaskedSoftmaxCrossEntropy
from keras_fame.models.sequential_recommender import AllPositionsTrainer, RecommenderTrainer
from keras_fame.utils import replace_atomically


class LastPositionTrainer(RecommenderTrainer):
    """Wraps a built `SASRec`/`FAME` to train on the newest position only; the wrapped model's weights train.

    For every-prefix rows (`keras_fame.data.every_prefix_rows`), where only
    the last column holds a target: the wrapped model would score every
    position, `[batch, seq, num_items + 1]`, to use one of them. This
    trainer runs the same encoder and head on the last position alone,
    `[batch, 1, num_items + 1]` (the head is position-wise, so the logits
    and their gradients are the same), and the loss reads the targets'
    last column. With a catalog of `V` items and `seq`-long buckets, that
    saves `(seq - 1) V d` multiply-adds per row, the bulk of an epoch.
    Ranking callbacks use the wrapped model's scorer; save the wrapped
    model, not the trainer.
    """

    def call(self, inputs, training=None):
        features, item_table = self.encoder(inputs, training=training)
        if not self.facet_loss_weight:
            return self.head(features[:, -1:, :], item_table, training=training)
        return self._outputs(*self._score_positions(features[:, -1:, :], item_table, training=training))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y is not None:
            y = y[:, -1:]
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)


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
    negatives=None,
    sampler="uniform",
    callbacks=None,
    facet_loss_weight=0.0,
    head_diagnostics_users=0,
):
    """Trains `model` with `fit` until the validation `monitor` stops improving.

    The best epoch's weights are restored. Returns a dict with the epochs
    run, the best epoch, its validation metrics and per-epoch seconds.
    `loss` defaults to the model's (full-softmax CE); pass e.g.
    `MaskedSoftmaxCrossEntropy(excluded_items=...)`. `every_prefix=True`
    trains on one row per (prefix, next item) pair with the loss at the last
    position (`keras_fame.data.every_prefix_rows`), scoring only that
    position (`LastPositionTrainer`). A NaN or infinite loss
    stops training and raises `FloatingPointError` naming `stage` and the
    epoch. With `checkpoint_dir`, every epoch is checkpointed there
    (`TrainingCheckpoint`) and a call after a kill continues from the last
    finished epoch, as if never stopped; the folder is removed when training
    ends. With `tensorboard_dir`, Keras' `TensorBoard` logs the loss and
    validation metrics and, for FAME, `GateHistograms` the gate and router
    weights of 512 validation users, under `tensorboard_dir/<stage>`.
    With `negatives` (a count) or `sampler="in_batch"`, training uses a
    sampled softmax (`keras_fame.sampled_softmax`: `negatives` items drawn by
    `sampler` per batch, log-Q corrected) instead of the full softmax; the
    validation still ranks every item. Extra `callbacks` run after the
    validation, so their `logs` hold its `val_*` metrics (e.g. one that
    stops at a target). The report's `validation_history` lists every
    validated epoch's metrics. `facet_loss_weight > 0` (a model built with
    `item_facets`) adds that times the auxiliary facet loss
    (`keras_fame.losses.facet_cross_entropy`) to the training loss, through
    the trainer of the chosen objective (`AllPositionsTrainer` for the full
    softmax). `head_diagnostics_users > 0` records, for FAME, the gate
    entropy and each head's own validation NDCG@10 on that many users
    after every epoch (`HeadDiagnostics`) under `head_diagnostics`.
    """
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.9, beta_2=0.999)
    inputs, targets = split.train_inputs, split.train_targets
    if every_prefix:
        inputs, targets = every_prefix_rows(inputs, targets)
    batches = TrainingBatches(inputs, targets, batch_size=batch_size, seed=seed)
    data, trained = batches, model
    if negatives is not None or sampler == "in_batch":
        from keras_fame.sampled_softmax import SampledBatches, SampledSoftmaxCrossEntropy, SampledSoftmaxTrainer

        if loss is not None:
            raise ValueError("loss= and a sampled softmax (negatives=, sampler=) exclude each other")
        data = SampledBatches(batches, model.num_items, num_negatives=negatives or 1, sampler=sampler, seed=seed)
        trained = SampledSoftmaxTrainer(model, facet_loss_weight=facet_loss_weight)
        trained.compile(optimizer=optimizer, loss=SampledSoftmaxCrossEntropy())
    elif every_prefix or facet_loss_weight:
        trainer = LastPositionTrainer if every_prefix else AllPositionsTrainer
        trained = trainer(model, facet_loss_weight=facet_loss_weight)
        trained.compile(optimizer=optimizer, loss=loss if loss is not None else MaskedSoftmaxCrossEntropy())
    else:
        model.compile(optimizer=optimizer, loss=loss)
    timer = EpochTimer()
    evaluation = FullRankingEvaluation(
        split.validation, every_n_epochs=every_n_epochs, exclude_history=exclude_history, verbose=verbose
    )
    stopper = keras.callbacks.EarlyStopping(
        monitor=monitor, mode="max", patience=patience, restore_best_weights=True, verbose=verbose
    )
    guard = NonFiniteLossGuard(stage)
    extra = list(callbacks or [])
    diagnostics = None
    if head_diagnostics_users and model.has_gates:
        diagnostics = HeadDiagnostics(split.validation, num_users=head_diagnostics_users)
        extra.insert(0, diagnostics)
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
    callbacks[callbacks.index(stopper):callbacks.index(stopper)] = extra  # after the validation, before stopping
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = TrainingCheckpoint(checkpoint_dir, callbacks=[timer, evaluation, stopper, *([diagnostics] if diagnostics else [])])
        callbacks.append(checkpoint)
    start = time.perf_counter()
    # shuffle=False: `TrainingBatches` shuffles rows and batch order itself, from (seed, epoch);
    # Keras' own batch shuffle would draw from Python's global `random`, which a resumed run cannot replay.
    trained.fit(data, epochs=epochs, callbacks=callbacks, verbose=verbose, shuffle=False)
    wall = time.perf_counter() - start
    best_epoch, best = max(evaluation.history, key=lambda item: item[1][monitor.removeprefix("val_")])
    return {
        "epochs_run": len(timer.seconds),
        "best_epoch": best_epoch + 1,
        "best_validation": best,
        "seconds_per_epoch": timer.seconds,
        "wall_seconds": wall,
        "validation_history": [{"epoch": epoch + 1, **metrics} for epoch, metrics in evaluation.history],
        **({"head_diagnostics": [{"epoch": e + 1, **r} for e, r in diagnostics.history]} if diagnostics else {}),
        **({"resumed_from_epoch": checkpoint.resumed_epoch} if checkpoint and checkpoint.resumed_epoch else {}),
    }


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


