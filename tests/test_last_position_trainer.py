"""Every-prefix training on the newest position only (`LastPositionTrainer`) equals the full-sequence path."""

import keras
import numpy as np
import pytest

import keras_fame
from keras_fame.data import TrainingBatches, every_prefix_rows, leave_one_out
from keras_fame.data.synthetic import planted_facets
from keras_fame.losses import MaskedSoftmaxCrossEntropy
from keras_fame.training import LastPositionTrainer


def _model(kind, num_items):
    if kind == "sasrec":
        return keras_fame.SASRec(num_items, hidden_dim=8, num_heads=2, max_len=10, dropout=0.0)
    return keras_fame.FAME(num_items, hidden_dim=8, num_heads=2, num_experts=2, max_len=10, dropout=0.0)


@pytest.mark.parametrize("kind", ["sasrec", "fame"])
def test_last_position_loss_and_step_equal_the_full_sequence_path(kind):
    data, _ = planted_facets(num_users=60, seed=0)
    split = leave_one_out(data, max_len=10)
    x, y = TrainingBatches(*every_prefix_rows(split.train_inputs, split.train_targets), batch_size=48, seed=1)[0]
    assert (y[:, :-1] == 0).all() and (y[:, -1] > 0).all()
    keras.utils.set_random_seed(0)
    full = _model(kind, data.num_items)
    last = _model(kind, data.num_items)
    last.set_weights(full.get_weights())
    trainer = LastPositionTrainer(last)
    logits = keras.ops.convert_to_numpy(trainer(x, training=False))
    assert logits.shape == (len(x), 1, data.num_items + 1)
    np.testing.assert_allclose(logits[:, 0], keras.ops.convert_to_numpy(full(x, training=False))[:, -1], rtol=1e-5, atol=1e-6)

    # One SGD step from the same weights on the same batch: the same loss and the same new weights.
    full.compile(optimizer=keras.optimizers.SGD(0.5), loss=MaskedSoftmaxCrossEntropy())
    trainer.compile(optimizer=keras.optimizers.SGD(0.5), loss=MaskedSoftmaxCrossEntropy())
    start = last.get_weights()
    loss_full = float(full.train_on_batch(x, y))
    loss_last = float(trainer.train_on_batch(x, y))
    assert loss_last == pytest.approx(loss_full, rel=1e-5)
    for a, b in zip(full.get_weights(), last.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert any(not np.allclose(a, b) for a, b in zip(start, last.get_weights()))  # the step trained `last`

def test_every_prefix_fit_uses_the_last_position_trainer_and_learns():
    from keras_fame.evaluation import evaluate_model
    from keras_fame.training import fit_with_early_stopping

    data, _ = planted_facets(num_users=300, seed=0)
    split = leave_one_out(data, max_len=12)
    keras.utils.set_random_seed(0)
    model = keras_fame.SASRec(data.num_items, hidden_dim=16, num_heads=2, max_len=12)
    before = evaluate_model(model, split.validation)["ndcg@10"]
    report = fit_with_early_stopping(model, split, epochs=3, batch_size=64, patience=3, verbose=0, every_prefix=True)
    assert report["best_validation"]["ndcg@10"] > before + 0.01, (before, report["best_validation"])
    # The wrapped model itself was trained (and keeps its own compile state untouched for saving).
    assert evaluate_model(model, split.validation)["ndcg@10"] == pytest.approx(report["best_validation"]["ndcg@10"])
