"""`head_diagnostics`' routing headroom (uniform gate, best head per user, top-10 overlap) against numpy."""

import itertools

import keras
import numpy as np

from keras_fame import FAME
from keras_fame.data import leave_one_out
from keras_fame.data.synthetic import planted_facets
from keras_fame.evaluation import head_diagnostics, metrics_from_ranks


def _by_hand(model, ev, k=10):
    out = model.scorer(explain=True).predict(ev.inputs, verbose=0)
    head_scores = np.asarray(out["head_scores"], np.float64)  # [users, H, items + 1]
    users, num_heads, _ = head_scores.shape
    masked = head_scores.copy()
    masked[:, :, 0] = -np.inf
    ranks = np.zeros((num_heads + 1, users), np.int64)
    overlaps = []
    for u in range(users):
        history = ev.history_items[ev.history_indptr[u]:ev.history_indptr[u + 1]]
        masked[u, :, history] = -np.inf
        tops = [set(np.argsort(-masked[u, h], kind="stable")[:k].tolist()) for h in range(num_heads)]
        overlaps.append(np.mean([len(tops[a] & tops[b]) / k for a, b in itertools.combinations(range(num_heads), 2)]))
        drop = [c for c in history if c != ev.targets[u]]
        for h, row in enumerate([*head_scores[u], head_scores[u].mean(axis=0)]):
            row = row.copy()
            row[0] = -np.inf
            row[drop] = -np.inf
            ranks[h, u] = int((row >= row[ev.targets[u]]).sum()) - 1
    return ranks, float(np.mean(overlaps)), np.asarray(out["head_weights"])


def test_uniform_oracle_and_overlap_equal_a_numpy_computation():
    keras.utils.set_random_seed(1)
    data, _ = planted_facets(num_users=48, max_length=10, seed=0)
    ev = leave_one_out(data, max_len=10).validation
    model = FAME(data.num_items, heads=3, experts=2, hidden_dim=12, max_len=10)
    result = head_diagnostics(model, ev, ks=(5, 10), batch_size=20)  # batches that split the users unevenly
    ranks, overlap, gates = _by_hand(model, ev)
    for h in range(3):
        assert result["head_metrics"][h] == metrics_from_ranks(ranks[h], (5, 10))
    assert result["uniform"] == metrics_from_ranks(ranks[3], (5, 10))
    assert result["oracle_head"] == metrics_from_ranks(ranks[:3].min(axis=0), (5, 10))
    assert result["oracle_head"]["hr@10"] >= max(m["hr@10"] for m in result["head_metrics"])
    np.testing.assert_allclose(result["head_top10_overlap"], overlap, rtol=1e-12)
    assert 0 < overlap < 1  # a fresh model's heads disagree, somewhat
    np.testing.assert_allclose(result["gate_mean"], gates.mean(axis=0), rtol=1e-5)
    # The gated ranking is Eq. 11 over the same head scores: with the scorer's gates it is the weighted sum.
    out = model.scorer(explain=True).predict(ev.inputs, verbose=0)
    weighted = np.einsum("uh,uhv->uv", np.asarray(out["head_weights"], np.float64), np.asarray(out["head_scores"]))
    np.testing.assert_allclose(np.asarray(out["scores"])[:, 1:], weighted[:, 1:], rtol=1e-4, atol=1e-5)


def test_overlap_is_one_for_identical_heads_and_zero_for_disjoint_top_lists():
    from keras_fame.evaluation.head_diagnostics import _top10_overlap

    scores = np.random.default_rng(0).normal(size=(4, 1, 41))
    same = np.concatenate([scores, scores], axis=1)
    np.testing.assert_array_equal(_top10_overlap(same, None), 1.0)
    # Head 1 ranks head 0's order backwards: its top 10 are head 0's bottom 10 (of 40 items).
    np.testing.assert_array_equal(_top10_overlap(np.concatenate([scores, -scores], axis=1), None), 0.0)
    # Excluding each row's 5 best items (history) from both heads: identical heads still agree on the next 10.
    top5 = np.argsort(-scores[:, 0, 1:], axis=1)[:, :5] + 1
    rows = np.repeat(np.arange(4), 5)
    np.testing.assert_array_equal(_top10_overlap(same, (rows, top5.ravel())), 1.0)
    shifted = same.copy()
    shifted[np.arange(4), 1, top5[:, 0]] = -1e9  # head 1 drops one of the shared items
    np.testing.assert_allclose(_top10_overlap(shifted, None), 0.9)
