"""recommend() on random histories: a valid answer or a clear ValueError, nothing else."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_fame import FAME

NUM_ITEMS, MAX_LEN, K = 25, 6, 4


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return FAME(NUM_ITEMS, hidden_dim=8, num_heads=2, num_experts=2, max_len=MAX_LEN)


histories = st.lists(st.lists(st.integers(-3, NUM_ITEMS + 3), max_size=MAX_LEN + 4), min_size=0, max_size=4)


@settings(max_examples=60, deadline=None)
@given(histories=histories)
def test_recommend_answers_or_raises_value_error(model, histories):
    try:
        out = model.recommend(histories, k=K)
    except ValueError as err:
        # An empty history is refused by contract (`recommend`): the model ranks from what a user did.
        bad = not histories or any(not h for h in histories) or any(not 1 <= i <= NUM_ITEMS for h in histories for i in h)
        assert bad, f"refused valid histories: {err}"
        return
    assert all(histories), "an empty history was answered"
    assert out["item_ids"].shape == (len(histories), K)
    for row, history in zip(out["item_ids"], histories):
        assert ((row >= 1) & (row <= NUM_ITEMS)).all()
        assert not set(row.tolist()) & set(history)
        assert len(set(row.tolist())) == K
    assert np.isfinite(out["scores"]).all()
