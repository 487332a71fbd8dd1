"""Bad input is refused up front: flags, constructor arguments, data folders, sequence files, histories."""

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_fame import FAME, FacetContrastivePretrainer, SASRec, console
from keras_fame.data import write_sequences
from keras_fame.data.synthetic import planted_facets
from keras_fame.experiments import PipelineConfig
from keras_fame.layers import FacetGatedHead, ItemEmbedding, MoEQueryAttention, TransformerBlock


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "-1"], "--epochs=-1: must be a positive integer"),
        (["--batch-size", "0"], "--batch-size=0: must be a positive integer"),
        (["--max-len", "0"], "--max-len=0: must be a positive integer"),
        (["--heads", "0"], "--heads=0: must be a positive integer"),
        (["--heads", "3"], "--hidden-dim=64 is not divisible by --heads=3"),
        (["--experts", "0"], "--experts=0: must be a positive integer"),
        (["--blocks", "0"], "--blocks=0: must be a positive integer"),
        (["--lr", "-1"], "--lr=-1.0: must be a positive number"),
        (["--lr", "nan"], "--lr=nan: must be a positive number"),
        (["--dropout", "2"], "--dropout=2.0: must be in [0, 1)"),
        (["--fame-dropout", "1"], "--fame-dropout=1.0: must be in [0, 1)"),
        (["--patience", "-2"], "--patience=-2: must be an integer >= 0"),
        (["--eval-every", "0"], "--eval-every=0: must be a positive integer"),
        (["--sampled-softmax", "0"], "--sampled-softmax=0: must be a positive integer"),
        (["--optimizer", "sgd"], "--optimizer: invalid choice: 'sgd'"),
        (["--gate-temperature", "0"], "--gate-temperature=0.0: must be a positive number"),
        (["--routing-loss-weight", "-1"], "--routing-loss-weight=-1.0: must be a number >= 0"),
        (["--item-facets", "auto", "--facet-loss-weight", "-1"], "--facet-loss-weight=-1.0: must be a number >= 0"),
        (["--facet-loss-weight", "0.5"], "need --item-facets"),
        (["--facet-attention"], "need --item-facets"),
        (["--gate-facets"], "need --item-facets"),
        (["--item-facets", "colour"], "unknown item facet 'colour'"),
        (["--model-devices", "2"], "--model-devices=2 splits the item tables: it needs --distribute='model'"),
        (["--model-devices", "0", "--distribute", "model"], "--model-devices=0: must be a positive integer"),
        (["--distribute", "model", "--model-devices", "2"], "--distribute model shards the item tables"),
    ],
)
def test_impossible_flags_exit_2_naming_the_flag_before_any_data_is_read(flags, message, capsys):
    start = time.perf_counter()
    with pytest.raises(SystemExit) as info:
        console.main(["train", "toys", "--data-dir", "/nonexistent", *flags])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "nonexistent" not in err  # refused before the data folder is even looked at
    assert time.perf_counter() - start < 10


def test_an_explicit_data_dir_without_the_file_is_an_error_not_a_fallback(tmp_path, capsys):
    assert console.main(["train", "toys", "--data-dir", "/nonexistent"]) == 2
    assert "--data-dir /nonexistent: no such folder" in capsys.readouterr().err
    assert console.main(["train", "toys", "--data-dir", str(tmp_path)]) == 2
    assert f"--data-dir {tmp_path} holds no toys/Toys_and_Games.txt" in capsys.readouterr().err


def test_a_bad_sequence_file_exits_2_with_file_and_line(tmp_path, capsys):
    data, _ = planted_facets(num_users=30, max_length=8, seed=0)
    path = tmp_path / "mine.txt"
    write_sequences(str(path), data)
    lines = path.read_text().splitlines()
    lines[4] = "5 12 x 7"
    path.write_text("\n".join(lines) + "\n")
    code = console.main(["train", "mine", "--sequence-file", str(path), "--output-dir", str(tmp_path / "out"),
                         "--text-init", "none", "--verbose", "0"])
    assert code == 2
    assert f"{path}:5" in capsys.readouterr().err


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: FAME(50, heads=2, bogus=3), TypeError, "FAME() got an unexpected keyword argument 'bogus'"),
        (lambda: SASRec(50, num_head=2), TypeError, "SASRec() got an unexpected keyword argument 'num_head'"),
        (lambda: FAME(0), ValueError, "num_items=0"),
        (lambda: FAME(-5), ValueError, "num_items=-5"),
        (lambda: FAME(100, experts=0), ValueError, "experts=0"),
        (lambda: FAME(100, heads=2.5), ValueError, "heads=2.5"),
        (lambda: FAME(100, hidden_dim=10, heads=4), ValueError, "hidden_dim=10 is not divisible by num_heads=4"),
        (lambda: FAME(100, dropout=1.0), ValueError, "dropout=1.0: must be in [0, 1)"),
        (lambda: FAME(100, gate_temperature=-1), ValueError, "gate_temperature=-1"),
        (lambda: SASRec(100, max_len=0), ValueError, "max_len=0"),
        (lambda: SASRec(100, num_blocks=0), ValueError, "num_blocks=0"),
        (lambda: SASRec(100, layer_norm_epsilon=0), ValueError, "layer_norm_epsilon=0"),
        (lambda: MoEQueryAttention(2, 4, num_experts=0), ValueError, "num_experts=0"),
        (lambda: MoEQueryAttention(2, 4, bogus=1), TypeError, "unexpected keyword argument 'bogus'"),
        (lambda: FacetGatedHead(0, 4), ValueError, "num_heads=0"),
        (lambda: FacetGatedHead(2, 4, dropout=-0.1), ValueError, "dropout=-0.1"),
        (lambda: ItemEmbedding(10, 8, 0), ValueError, "max_len=0"),
        (lambda: ItemEmbedding(10, 8, 5, offset_dropout=1.5, item_content=True), ValueError, "offset_dropout=1.5"),
        (lambda: TransformerBlock(8, 3), ValueError, "hidden_dim=8 is not divisible by num_heads=3"),
        (lambda: FacetContrastivePretrainer(2, 0), ValueError, "head_dim=0"),
        (lambda: FacetContrastivePretrainer(2, 4, temperature=0), ValueError, "temperature=0"),
        (lambda: PipelineConfig(batch_size=0), ValueError, "batch_size=0"),
        (lambda: PipelineConfig(monitor="loss"), ValueError, "monitor='loss'"),
        (lambda: PipelineConfig(optimizer="sgd"), ValueError, "optimizer='sgd': must be one of adam, lazy_adam"),
    ],
)
def test_constructors_refuse_impossible_arguments_naming_them(build, error, message):
    with pytest.raises(error) as info:
        build()
    assert message in str(info.value)


@pytest.fixture(scope="module")
def small_model():
    return SASRec(20, hidden_dim=8, max_len=5)


@pytest.mark.parametrize(
    "histories, message",
    [
        ([[1.5, 2.7]], "history 0 at position 0 holds 1.5, not an integer item id"),
        ([[3], [1, float("nan")]], "history 1 at position 1 holds nan"),
        ([[1, "a"]], "history 0 at position 1 holds 'a'"),
        ([[1, None]], "history 0 at position 1 holds None"),
        ([[1, True]], "history 0 at position 1 holds True"),
        ("1 2 3", "not a string"),
        ([[2], []], "history 1 is empty"),
        (np.array([[1.0, 2.5]]), "histories[0, 1] holds 2.5"),
        (np.array([[0, 0], [1, 2]]), "history 0 is empty"),
        ([[0, 3]], "history 0 holds 0, not an item id in 1..20"),
    ],
)
def test_histories_must_be_item_ids(small_model, histories, message):
    with pytest.raises(ValueError) as info:
        small_model.recommend(histories, k=3)
    assert message in str(info.value)


def test_integral_floats_are_item_ids(small_model):
    as_floats = small_model.recommend([[1.0, 2.0]], k=3)["item_ids"]
    np.testing.assert_array_equal(as_floats, small_model.recommend([[1, 2]], k=3)["item_ids"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.integers(-5, 30), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=2)),
                min_size=0, max_size=6))
def test_any_history_is_answered_or_refused_with_a_value_error(small_model, history):
    valid = len(history) > 0 and all(
        not isinstance(v, str) and np.isfinite(v) and float(v).is_integer() and 1 <= v <= 20 for v in history
    )
    if valid:
        out = small_model.recommend([history], k=3)
        assert out["item_ids"].shape == (1, 3)
        assert not set(out["item_ids"][0].tolist()) & {int(v) for v in history}
    else:
        with pytest.raises(ValueError, match="history 0"):
            small_model.recommend([history], k=3)
