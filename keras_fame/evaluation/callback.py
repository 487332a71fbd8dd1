import time

import keras

from keras_fame.evaluation.ranking import DEFAULT_KS, evaluate_model


class FullRankingEvaluation(keras.callbacks.Callback):
    """Evaluates full-ranking HR@k / NDCG@k every N epochs and writes them into `logs`.

    The values go into the epoch's `logs` as `{prefix}hr@k`, `{prefix}ndcg@k`
    (e.g. `val_ndcg@10`), so `EarlyStopping`, `ModelCheckpoint`, `History`
    and progress bars see them. Keras hands the same `logs` dict to the
    callbacks in list order: put this callback BEFORE the ones that read its
    metrics. On epochs it skips, the latest values are repeated, so monitors
    never find the key missing (with `every_n_epochs > 1`, count patience in
    evaluated epochs accordingly).

    Args:
        evaluation_set: `EvaluationSet` (usually `split.validation`).
        every_n_epochs: evaluate on epochs `N-1, 2N-1, ...` (0-based) and the last.
        ks: cut-offs.
        exclude_history: protocol, see `keras_fame.evaluation.ranking`.
        prefix: metric name prefix.
        batch_size: users per scoring batch.
        chunk_size: optional int, item columns scored at once
            (`target_rank_model(model, chunk_size)`): memory `batch_size x
            chunk_size` scores instead of `batch_size x (num_items + 1)`.
            Defaults to None (all at once).
        verbose: print the metrics after each evaluation.

    Attributes:
        history: list of `(epoch, metrics dict)` for every evaluation.
    """

    RESUME_STATE = ("history", "_latest")  # restored by `keras_fame.training.TrainingCheckpoint`

    def __init__(
        self,
        evaluation_set,
        every_n_epochs=1,
        ks=DEFAULT_KS,
        exclude_history=True,
        prefix="val_",
        batch_size=256,
        verbose=1,
        chunk_size=None,
    ):
        super().__init__()
        self.evaluation_set = evaluation_set
        self.every_n_epochs = int(every_n_epochs)
        self.ks = tuple(ks)
        self.exclude_history = exclude_history
        self.prefix = prefix
        self.batch_size = batch_size
        self.chunk_size = chunk_size
        self.verbose = verbose
        self.history = []
        self._latest = None
        self._ranks = None

    def on_train_begin(self, logs=None):
        from keras_fame.evaluation.device_ranking import target_rank_model

        # A trainer (`keras_fame.training`) wraps the model it trains: rank with that model.
        self._ranks = target_rank_model(getattr(self.model, "recommender", self.model), self.chunk_size)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        last_epoch = self.params.get("epochs") if self.params else None
        due = (epoch + 1) % self.every_n_epochs == 0 or (last_epoch is not None and epoch + 1 == last_epoch)
        if due or self._latest is None:
            start = time.perf_counter()
            result = evaluate_model(
                getattr(self.model, "recommender", self.model),
                self.evaluation_set,
                ks=self.ks,
                exclude_history=self.exclude_history,
                batch_size=self.batch_size,
                rank_model=self._ranks,
            )
            self._latest = {f"{self.prefix}{k}": v for k, v in result.items() if "@" in k}
            self.history.append((epoch, dict(result)))
            if self.verbose:
                shown = "  ".join(f"{k}={v:.4f}" for k, v in self._latest.items())
                print(f"\nEpoch {epoch + 1}: {shown}  ({result['protocol']}, {time.perf_counter() - start:.1f}s)")
        logs.update(self._latest)
