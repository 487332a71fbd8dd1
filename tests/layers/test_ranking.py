"""The ranking layers against numpy: the window of newest valid ids, and the masked top-k."""

import keras
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_fame.data.split import pad_left
from keras_fame.evaluation import top_k
from keras_fame.layers import HistoryTopK, NewestItems
from keras_fame.layers.item_scores import PADDING_SCORE


def _numpy_window(rows, num_items, max_len):
    kept = [[int(i) for i in row if 1 <= i <= num_items] for row in rows]
    lengths = np.array([len(r) for r in kept])
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.array([i for r in kept for i in r], dtype=np.int64)
    return pad_left(flat, indptr[:-1], indptr[1:], max_len)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 5),
    seq=st.integers(1, 12),
    max_len=st.integers(1, 8),
)
def test_newest_items_packs_valid_ids_right_and_keeps_the_newest(seed, batch, seq, max_len):
    rng = np.random.default_rng(seed)
    num_items = 9
    # Padding, valid ids and out-of-range ids (negative and too large) anywhere in the row.
    rows = rng.integers(-3, num_items + 4, size=(batch, seq)).astype("int32")
    out = keras.ops.convert_to_numpy(NewestItems(num_items, max_len)(rows))
    np.testing.assert_array_equal(out, _numpy_window(rows, num_items, max_len))


def _numpy_masked_top_k(scores, history, k, exclude_seen):
    scores = np.array(scores, dtype=np.float32)
    width = scores.shape[-1]
    for r, row in enumerate(history):
        if exclude_seen:
            seen = [i for i in row if 0 < i < width]
            scores[r, ..., seen] = PADDING_SCORE
    scores[..., 0] = 2 * PADDING_SCORE
    return top_k(scores, k)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    heads=st.sampled_from([None, 1, 3]),
    exclude_seen=st.booleans(),
    k=st.integers(1, 7),
)
def test_history_top_k_equals_numpy_with_ties_and_exclusions(seed, heads, exclude_seen, k):
    rng = np.random.default_rng(seed)
    batch, num_items = 4, 7
    shape = (batch, num_items + 1) if heads is None else (batch, heads, num_items + 1)
    # Few distinct values: many ties, which must go to the lower id.
    scores = rng.integers(0, 3, size=shape).astype("float32")
    history = rng.integers(-2, num_items + 3, size=(batch, 5)).astype("int32")
    ids, values = HistoryTopK(k, exclude_seen=exclude_seen)(scores, history)
    want_ids, want_values = _numpy_masked_top_k(scores, history, k, exclude_seen)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ids), want_ids)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(values), want_values)


def test_history_top_k_never_returns_padding_or_a_seen_item_while_others_are_left():
    scores = np.array([[100.0, 5.0, 4.0, 3.0, 2.0]], "float32")  # padding scores highest
    ids, _ = HistoryTopK(2)(scores, np.array([[1, 0, 3]], "int32"))
    assert keras.ops.convert_to_numpy(ids).tolist() == [[2, 4]]


def test_ranking_layers_serialise():
    for layer in (NewestItems(10, 4, name="w"), HistoryTopK(3, exclude_seen=False, name="t")):
        again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert again.get_config() == layer.get_config()


def test_layer_contracts():
    from keras_fame.testing import run_layer_test

    rng = np.random.default_rng(0)
    ids = rng.integers(-2, 13, size=(3, 7)).astype("int32")
    run_layer_test(NewestItems, {"num_items": 10, "max_len": 5}, (ids,), expected_output_shape=(3, 5),
                   expected_num_trainable_weights=0)
    scores = rng.normal(size=(3, 11)).astype("float32")
    run_layer_test(HistoryTopK, {"k": 4}, (scores, ids), expected_output_shape=[(3, 4), (3, 4)],
                   expected_num_trainable_weights=0)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    heads=st.sampled_from([None, 2]),
    exclude_seen=st.booleans(),
    k=st.integers(1, 4),
    chunk_size=st.integers(4, 13),
)
def test_chunked_top_k_equals_the_full_masked_top_k(seed, heads, exclude_seen, k, chunk_size):
    from keras_fame.layers.ranking import chunked_top_k

    rng = np.random.default_rng(seed)
    batch, num_items = 3, 17
    shape = (batch, num_items + 1) if heads is None else (batch, heads, num_items + 1)
    scores = rng.integers(0, 4, size=shape).astype("float32")  # ties across chunk borders
    history = rng.integers(-2, num_items + 3, size=(batch, 6)).astype("int32")
    ids, values = chunked_top_k(
        lambda lo, hi: scores[..., lo:hi], num_items + 1, k, history if exclude_seen else None, chunk_size
    )
    want_ids, want_values = HistoryTopK(k, exclude_seen=exclude_seen)(scores, history)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ids), keras.ops.convert_to_numpy(want_ids))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(values), keras.ops.convert_to_numpy(want_values))


def test_chunked_top_k_scores_one_chunk_at_a_time():
    from keras_fame.layers.ranking import chunked_top_k

    asked = []

    def score_chunk(lo, hi):
        asked.append((lo, hi))
        return np.arange(lo, hi, dtype="float32")[None, :]

    ids, _ = chunked_top_k(score_chunk, 25, 3, chunk_size=10)
    assert asked == [(0, 10), (10, 20), (20, 25)]
    assert keras.ops.convert_to_numpy(ids).tolist() == [[24, 23, 22]]
