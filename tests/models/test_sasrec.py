import os

import keras
import numpy as np
import pytest

from keras_fame import SASRec
from keras_fame.data import TrainingBatches, from_lists, leave_one_out
from keras_fame.losses import MaskedSoftmaxCrossEntropy


def test_shapes_padding_column_and_round_trip(tmp_path):
    model = SASRec(20, hidden_dim=8, num_heads=2, max_len=6)
    ids = np.array([[0, 0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10]], "int32")
    scores = np.asarray(model(ids))
    assert scores.shape == (2, 6, 21)
    assert scores[..., 0].max() < -1e8  # padding never wins
    path = os.path.join(tmp_path, "sasrec.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np.asarray(restored(ids)), scores)
    assert restored.get_config() == model.get_config()


def test_bucketed_batches_give_the_full_width_loss():
    data = from_lists([[1, 2, 3, 4], [2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [5, 4, 3, 2, 1]])
    split = leave_one_out(data, max_len=12)
    model = SASRec(data.num_items, hidden_dim=8, max_len=12, dropout=0.0)
    loss = MaskedSoftmaxCrossEntropy()
    full = float(loss(split.train_targets, model(split.train_inputs)))
    batches = TrainingBatches(split.train_inputs, split.train_targets, batch_size=8, buckets=(8, 12), shuffle=False)
    (x, y), = [batches[i] for i in range(len(batches))]
    assert x.shape[1] == 8  # training rows have 1, 7 and 2 inputs: cut from 12 to 8
    np.testing.assert_allclose(float(loss(y, model(x))), full, rtol=1e-5)


def test_training_learns_a_deterministic_sequence():
    # Every user walks 1 -> 2 -> ... : the next item is always current + 1.
    seqs = [list(range(s, s + 8)) for s in range(1, 30)]
    data = from_lists(seqs)
    split = leave_one_out(data, max_len=8)
    model = SASRec(data.num_items, hidden_dim=16, max_len=8, dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(TrainingBatches(split.train_inputs, split.train_targets, batch_size=16), epochs=40, verbose=0)
    from keras_fame.evaluation import evaluate_model

    result = evaluate_model(model, split.test, exclude_history=False)
    assert result["hr@5"] > 0.9


def test_backbone_recipe_options_round_trip_and_pass_to_fame(tmp_path):
    from keras_fame import FAME

    init = keras.initializers.RandomNormal(stddev=0.02)
    model = SASRec(30, hidden_dim=8, num_heads=2, max_len=5, activation="gelu", intermediate_dim=32,
                   kernel_initializer=init, layer_norm_epsilon=1e-12)
    block = model.transformer_blocks[0]
    assert block.activation == "gelu" and block.ffn_inner.units == 32
    assert np.asarray(block.ffn_inner.kernel).std() == pytest.approx(0.02, rel=0.2)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    x = np.array([[0, 1, 2, 3, 4]], "int32")
    np.testing.assert_allclose(again.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-5, atol=1e-6)
    assert again.transformer_blocks[0].activation == "gelu"
    fame = FAME.from_sasrec(model, num_experts=2)
    assert fame.transformer_blocks[0].activation == "gelu" and fame.layer_norm_epsilon == 1e-12
