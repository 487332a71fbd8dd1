"""`.keras` files saved by an earlier version (commit 2fc5e2a, tests/fixtures/) load and score as they did then.

The fixtures: a SASRec with a frozen text table, ID offsets, facets and facet attention (GELU, width-16 FFN),
the FAME transplanted from it (N = 3, gate temperature 0.5), and a fresh FAME; `scores.json` holds the scores
each gave then on `histories.npy`.
"""

import json
import os

import keras
import numpy as np
import pytest

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")


@pytest.mark.parametrize("name", ["sasrec", "fame", "fame_plain"])
def test_models_saved_before_load_and_score_the_same(name):
    with open(os.path.join(FIXTURES, "scores.json")) as f:
        expected = np.asarray(json.load(f)[name])
    ids = np.load(os.path.join(FIXTURES, "histories.npy"))
    model = keras.saving.load_model(os.path.join(FIXTURES, f"{name}.keras"), safe_mode=True)
    scores = np.asarray(model.scorer().predict_on_batch(ids)["scores"])
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
