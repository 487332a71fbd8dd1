"""Callbacks of `fit_with_early_stopping`: epoch timing, a stop at the first non-finite loss, exact resume."""

import json
import os
import shutil
import time

import keras
import numpy as np

from keras_fame.utils import json_default, replace_atomically


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
            json.dump(state, f, default=json_default)
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
