"""Training one model with `fit`: early stopping on full-ranking validation, resume after a kill.

`fit_with_early_stopping` trains one model with the full-ranking validation
callback and early stopping on a validation metric, checkpointing every epoch
(`TrainingCheckpoint`) when asked. The paper's staged pipeline (text start ->
SASRec -> transplant -> FAME) is the experiment harness's
(`keras_fame.experiments.run_pipeline`), built on it.
"""

import os
import time

import keras

from keras_fame.data import TrainingBatches, every_prefix_rows
from keras_fame.distribution import batch_shards
from keras_fame.evaluation import FullRankingEvaluation, GateHistograms
from keras_fame.evaluation.head_diagnostics import HeadDiagnostics
from keras_fame.losses import MaskedSoftmaxCrossEntropy, SampledSoftmaxCrossEntropy
from keras_fame.optimizers import make_optimizer
from keras_fame.training.callbacks import EpochTimer, NonFiniteLossGuard, TrainingCheckpoint
from keras_fame.training.trainers import AllPositionsTrainer, LastPositionTrainer, SampledSoftmaxTrainer


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
    optimizer="adam",
    callbacks=None,
    facet_loss_weight=0.0,
    head_diagnostics_users=0,
    routing_loss_weight=0.0,
    evaluation_chunk_size=None,
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
    With `negatives` (a count; needed by `"popularity"` and `"mixed"`) or `sampler="in_batch"`, training uses a
    sampled softmax (`SampledSoftmaxTrainer` on `keras_fame.data.SampledBatches`: `negatives` items drawn by
    `sampler` per batch, log-Q corrected) instead of the full softmax; the
    validation still ranks every item. Extra `callbacks` run after the
    validation, so their `logs` hold its `val_*` metrics (e.g. one that
    stops at a target); one with a `RESUME_STATE` tuple of attribute names
    has them checkpointed too. `evaluation_chunk_size` scores that many
    items at a time in the validation (`FullRankingEvaluation(chunk_size=)`;
    None: all at once). The report's `validation_history` lists every
    validated epoch's metrics. `facet_loss_weight > 0` (a model built with
    `item_facets`) adds that times the auxiliary facet loss
    (`keras_fame.losses.facet_cross_entropy`) to the training loss, through
    the trainer of the chosen objective (`AllPositionsTrainer` for the full
    softmax). `routing_loss_weight > 0` (FAME) adds that times the routing
    loss (`keras_fame.losses.mixture_routing_loss`: the heads' own softmaxes
    as experts mixed by the gate) the same way. `optimizer` names the optimizer (`keras_fame.optimizers.make_optimizer`:
    `"adam"`, the default, or `"lazy_adam"`), built with `learning_rate`. `head_diagnostics_users > 0` records, for FAME, the gate
    entropy and each head's own validation NDCG@10 on that many users
    after every epoch (`HeadDiagnostics`) under `head_diagnostics`.
    """
    optimizer = make_optimizer(optimizer, learning_rate)
    inputs, targets = split.train_inputs, split.train_targets
    if every_prefix:
        inputs, targets = every_prefix_rows(inputs, targets)
    batches = TrainingBatches(inputs, targets, batch_size=batch_size, seed=seed)
    data, trained = batches, model
    if sampler in ("popularity", "mixed") and negatives is None:
        raise ValueError(f"sampler={sampler!r} draws negatives: give their count (negatives=)")
    if negatives is not None or sampler == "in_batch":
        from keras_fame.data.sampled_batches import SampledBatches

        if loss is not None:
            raise ValueError("loss= and a sampled softmax (negatives=, sampler=) exclude each other")
        _check_sampled_softmax_distribution(negatives)
        data = SampledBatches(batches, model.num_items, num_negatives=negatives or 1, sampler=sampler, seed=seed)
        trained = SampledSoftmaxTrainer(
            model, facet_loss_weight=facet_loss_weight, routing_loss_weight=routing_loss_weight
        )
        trained.compile(optimizer=optimizer, loss=SampledSoftmaxCrossEntropy())
    elif every_prefix or facet_loss_weight or routing_loss_weight:
        trainer = LastPositionTrainer if every_prefix else AllPositionsTrainer
        trained = trainer(model, facet_loss_weight=facet_loss_weight, routing_loss_weight=routing_loss_weight)
        trained.compile(optimizer=optimizer, loss=loss if loss is not None else MaskedSoftmaxCrossEntropy())
    else:
        model.compile(optimizer=optimizer, loss=loss)
    timer = EpochTimer()
    evaluation = FullRankingEvaluation(
        split.validation, every_n_epochs=every_n_epochs, exclude_history=exclude_history, verbose=verbose,
        chunk_size=evaluation_chunk_size,
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
        stateful = [c for c in extra if c is not diagnostics and getattr(c, "RESUME_STATE", ())]
        checkpoint = TrainingCheckpoint(
            checkpoint_dir, callbacks=[timer, evaluation, stopper, *([diagnostics] if diagnostics else []), *stateful]
        )
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


def _check_sampled_softmax_distribution(negatives):
    """A sampled softmax's shared candidates `[C]` are one list for the whole batch: refuse layouts that cut it.

    A `tf.distribute` strategy splits every input along its first axis, so each replica would see only a part
    of the candidates; data-parallel JAX shards them too but keeps one logical array, which needs `C` to divide
    evenly over the batch shards.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            raise ValueError("a sampled softmax under a tf.distribute strategy would split the batch's shared "
                             "candidates over the replicas: train it on one device, or data-parallel on JAX")
    shards = batch_shards()
    if negatives and negatives % shards:
        raise ValueError(f"negatives={negatives} must be a multiple of the {shards} batch shards of the distribution")
