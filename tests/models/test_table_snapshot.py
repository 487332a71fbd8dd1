"""ItemTableSnapshot: the item table computed once, for rankers that serve many requests."""

import keras
import numpy as np

from keras_fame import FAME, SASRec
from keras_fame.models.retrieval import ItemTableSnapshot

V = 25


def test_a_snapshot_ranks_as_the_computed_table_and_is_a_copy():
    rng = np.random.default_rng(0)
    facets = [rng.integers(0, 4, V + 1).astype("int32"), rng.integers(0, 3, V + 1).astype("int32")]
    keras.utils.set_random_seed(0)
    model = FAME(V, hidden_dim=8, num_heads=2, num_experts=2, max_len=6, item_facets=facets)
    assert model.item_embedding.computes_table
    snapshot = ItemTableSnapshot(model)
    np.testing.assert_array_equal(np.asarray(snapshot.table), np.asarray(model.item_embedding.item_table()))
    # Its one weight is the table: the model's item weights are not tracked (an export holds them once).
    assert [w.path for w in snapshot.weights] == [snapshot.table.path]
    ids = rng.integers(1, V + 1, size=(4, 6)).astype("int32")
    computed = model.ranker(k=5, explain=True).predict_on_batch(ids)
    stored = model.ranker(k=5, explain=True, table_snapshot=snapshot).predict_on_batch(ids)
    for name in computed:
        np.testing.assert_array_equal(np.asarray(stored[name]), np.asarray(computed[name]))
    # A copy: relabelling the model afterwards changes the computed table, not the snapshot's.
    before = np.asarray(model.item_embedding.item_table())
    model.item_embedding.set_item_facets([np.roll(f, 3) for f in facets])
    assert not np.allclose(np.asarray(model.item_embedding.item_table()), before)
    np.testing.assert_array_equal(np.asarray(snapshot.table), before)


def test_recommend_snapshots_the_table_once_per_call_and_follows_changes():
    rng = np.random.default_rng(1)
    facets = [rng.integers(0, 4, V + 1).astype("int32"), rng.integers(0, 3, V + 1).astype("int32")]
    keras.utils.set_random_seed(1)
    model = FAME(V, hidden_dim=8, num_heads=2, num_experts=2, max_len=6, item_facets=facets)
    histories = [list(rng.integers(1, V + 1, size=n)) for n in (1, 3, 6, 9)]
    rows = np.zeros((len(histories), 16), "int32")
    for row, history in zip(rows, histories):
        row[16 - len(history):] = history
    computed = model.ranker(k=5, explain=True)
    first = model.recommend(histories, k=5, explain=True, batch_size=3)
    expected = computed.predict_on_batch(rows)
    for name in expected:
        np.testing.assert_allclose(first[name], np.asarray(expected[name]), rtol=1e-6, atol=1e-6)
    # Relabelled between calls: the next call ranks with the new table, not the first call's.
    model.item_embedding.set_item_facets([np.roll(f, 3) for f in facets])
    second = model.recommend(histories, k=5, explain=True, batch_size=3)
    expected = computed.predict_on_batch(rows)
    for name in expected:
        np.testing.assert_allclose(second[name], np.asarray(expected[name]), rtol=1e-6, atol=1e-6)
    assert not np.array_equal(first["scores"], second["scores"])


def test_recommend_on_a_plain_id_table_keeps_no_snapshot():
    keras.utils.set_random_seed(2)
    model = SASRec(V, hidden_dim=8, num_heads=2, max_len=6)
    assert not model.item_embedding.computes_table
    model.recommend([[1, 2, 3]], k=4)
    assert "snapshot" not in model.__dict__["_ranker_cache"]
