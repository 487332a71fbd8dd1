"""Mixed precision (bf16 compute, float32 variables, float32 scores and loss) through Keras' dtype policies."""

import json

import keras
import numpy as np
import pytest

import keras_fame
from keras_fame.data import TrainingBatches, leave_one_out, write_sequences
from keras_fame.data.synthetic import planted_facets
from keras_fame.evaluation import evaluate_model
from keras_fame.utils import dtype_policy


def _build(kind, num_items):
    if kind == "sasrec":
        return keras_fame.SASRec(num_items, hidden_dim=16, num_heads=2, max_len=12)
    return keras_fame.FAME(num_items, hidden_dim=16, num_heads=2, num_experts=2, max_len=12)


@pytest.mark.parametrize("kind", ["sasrec", "fame"])
def test_mixed_models_compute_in_bf16_and_score_in_float32(kind, tmp_path):
    data, _ = planted_facets(num_users=200, seed=0)
    split = leave_one_out(data, max_len=12)
    keras.utils.set_random_seed(0)
    reference = _build(kind, data.num_items)
    with dtype_policy("mixed_bfloat16"):
        mixed = _build(kind, data.num_items)
    assert keras.config.dtype_policy().name == "float32"  # restored after the block
    mixed.set_weights(reference.get_weights())
    assert {v.dtype for v in mixed.weights} == {"float32"}
    assert mixed.transformer_blocks[0].compute_dtype == "bfloat16"
    head = mixed.get_layer("item_scores" if kind == "sasrec" else "facet_head")
    assert head.compute_dtype == "float32"
    x = split.validation.inputs[:64]
    scores = keras.ops.convert_to_numpy(mixed(x, training=False))
    assert scores.dtype == np.float32
    expected = keras.ops.convert_to_numpy(reference(x, training=False))
    real = slice(1, None)  # column 0 is padding
    # bf16 hidden states: scores agree to bf16 precision, and the rankings agree at the top.
    np.testing.assert_allclose(scores[:, -1, real], expected[:, -1, real], atol=0.05 * np.abs(expected).max())
    top = np.argmax(scores[:, -1, real], -1) == np.argmax(expected[:, -1, real], -1)
    assert top.mean() > 0.8, top.mean()
    # Few ties among float32 scores of distinct items, unlike bf16 logits would have.
    ranked = keras.ops.convert_to_numpy(mixed.scorer()(x)["scores"])[:, 1:]
    assert ranked.dtype == np.float32
    assert np.mean([len(np.unique(row)) for row in ranked]) > 0.95 * ranked.shape[1]

    # It trains, and loads back with its layers' policies outside the block.
    mixed.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = evaluate_model(mixed, split.validation)["ndcg@10"]
    history = mixed.fit(TrainingBatches(split.train_inputs, split.train_targets, 64), epochs=3, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"]).all()
    after = evaluate_model(mixed, split.validation)["ndcg@10"]
    assert after > before + 0.01, (before, after)
    mixed.save(tmp_path / "mixed.keras")
    loaded = keras.saving.load_model(tmp_path / "mixed.keras", safe_mode=True)
    assert loaded.transformer_blocks[0].compute_dtype == "bfloat16"
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(mixed(x)), rtol=1e-5, atol=1e-5
    )
    if kind == "sasrec":  # the transplant keeps the policy, outside the block too
        fame = keras_fame.FAME.from_sasrec(mixed, num_experts=2)
        assert fame.transformer_blocks[0].compute_dtype == "bfloat16"
        assert fame.get_layer("facet_head").compute_dtype == "float32"


def test_the_pipeline_runs_mixed_and_records_it(tmp_path):
    from keras_fame.experiments import run_pipeline

    data, _ = planted_facets(num_users=150, max_length=12, seed=0)
    path = tmp_path / "seqs.txt"
    write_sequences(str(path), data)
    results = run_pipeline(
        str(path), "synthetic", str(tmp_path / "run"), hidden_dim=8, max_len=12, epochs=1, fame_epochs=1, verbose=0,
        mixed_precision=True,
    )
    assert keras.config.dtype_policy().name == "float32"
    assert results["config"]["mixed_precision"] is True
    fame = keras.saving.load_model(tmp_path / "run" / "fame.keras", safe_mode=True)
    assert fame.transformer_blocks[0].compute_dtype == "bfloat16" and fame.get_layer("facet_head").compute_dtype == "float32"
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    again = evaluate_model(fame, leave_one_out(data, max_len=12).test, exclude_history=True)
    assert saved["fame"]["test"]["exclude_history"]["ndcg@10"] == pytest.approx(again["ndcg@10"], abs=1e-6)


def test_the_item_table_reaches_the_scoring_head_unrounded():
    # Keras autocasts a mixed layer's variables to bf16 inside `call`; the item table must not be: the
    # float32 scoring head reads it (8 mantissa bits would tie scores over thousands of items).
    facets = [np.arange(31) % 4]
    with dtype_policy("mixed_bfloat16"):
        model = keras_fame.FAME(30, hidden_dim=8, num_heads=2, num_experts=2, max_len=6, item_facets=facets)
    table = keras.Model(model.inputs, model._head_wiring[1])(np.ones((2, 6), "int32"))
    assert keras.backend.standardize_dtype(table.dtype) == "float32"
    np.testing.assert_array_equal(np.asarray(table), np.asarray(model.item_embedding.item_table()))
    assert not np.array_equal(np.asarray(table), np.asarray(table).astype(keras.ops.convert_to_numpy(
        keras.ops.cast(table, "bfloat16")).dtype).astype("float32"))
