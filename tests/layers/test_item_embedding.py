import numpy as np
import pytest

from keras_fame.layers import ItemEmbedding
from keras_fame.testing import run_layer_test


def test_layer_contract():
    ids = np.array([[0, 0, 3, 7], [1, 2, 3, 4]], "int32")
    run_layer_test(
        ItemEmbedding,
        {"num_items": 10, "hidden_dim": 8, "max_len": 6, "dropout": 0.1},
        (ids,),
        expected_output_shape=[(2, 4, 8), (11, 8), (2, 4)],  # embedded sequence, item table, padding mask
        expected_num_trainable_weights=4,  # items, positions, LayerNorm gamma/beta
    )


def test_positions_count_from_the_right_so_cropping_is_exact():
    layer = ItemEmbedding(num_items=10, hidden_dim=8, max_len=6)
    full = np.array([[0, 0, 0, 5, 2, 9]], "int32")
    out_full, _, mask_full = layer(full)
    out_crop, _, mask_crop = layer(full[:, -3:])
    np.testing.assert_allclose(np.asarray(out_full)[:, -3:], np.asarray(out_crop), atol=1e-6)
    assert np.asarray(mask_full)[:, -3:].tolist() == np.asarray(mask_crop).tolist()
    # Padded positions are exactly zero.
    assert np.all(np.asarray(out_full)[0, :3] == 0)


def test_longer_sequences_keep_the_newest_items():
    layer = ItemEmbedding(num_items=10, hidden_dim=8, max_len=4)
    out_long, _, _ = layer(np.array([[1, 2, 3, 4, 5, 6]], "int32"))
    out_last, _, _ = layer(np.array([[3, 4, 5, 6]], "int32"))
    np.testing.assert_allclose(np.asarray(out_long), np.asarray(out_last), atol=1e-6)


def test_out_of_range_ids_are_padding():
    layer = ItemEmbedding(num_items=10, hidden_dim=8, max_len=4)
    out, _, mask = layer(np.array([[-3, 11, 1000, 4]], "int32"))
    assert np.asarray(mask).tolist() == [[False, False, False, True]]
    assert np.all(np.asarray(out)[0, :3] == 0)


def _facet_layer(fusion, seed=0):
    rng = np.random.default_rng(seed)
    labels = [rng.integers(0, 4, 11), rng.integers(0, 3, 11)]
    layer = ItemEmbedding(num_items=10, hidden_dim=8, max_len=6, facet_vocab_sizes=[3, 2], facet_fusion=fusion)
    layer.build((None, None))
    layer.set_item_facets([np.minimum(labels[0], 3), np.minimum(labels[1], 2)])
    return layer


def test_facet_layer_contract():
    ids = np.array([[0, 0, 3, 7], [1, 2, 3, 4]], "int32")
    run_layer_test(
        ItemEmbedding,
        {"num_items": 10, "hidden_dim": 8, "max_len": 6, "facet_vocab_sizes": [3, 2], "facet_fusion": "slice"},
        (ids,),
        expected_output_shape=[(2, 4, 8), (11, 8), (2, 4)],
        expected_num_trainable_weights=6,  # items, positions, LayerNorm gamma/beta, two facet tables
    )


@pytest.mark.parametrize("fusion", ["slice", "sum"])
def test_fused_item_table_equals_numpy(fusion):
    layer = _facet_layer(fusion)
    ids = np.asarray(layer.item_embeddings)
    labels = [np.asarray(v) for v in layer.facet_labels]
    tables = [np.asarray(v).copy() for v in layer.facet_embeddings]
    for table in tables:
        table[0] = 0.0  # label 0 (no label) adds nothing
    parts = [table[l] for table, l in zip(tables, labels)]
    expected = ids + (np.concatenate(parts, axis=1) if fusion == "slice" else parts[0] + parts[1])
    np.testing.assert_allclose(np.asarray(layer.item_table()), expected, rtol=1e-6, atol=1e-7)
    # Facet k's rows in the item space are what label c adds to a row of the table.
    for k, table in enumerate(tables):
        rows = np.asarray(layer.facet_rows(k))
        assert rows.shape == (len(table), 8)
        if fusion == "slice":
            np.testing.assert_allclose(rows[:, 4 * k : 4 * k + 4], table, atol=1e-7)
            assert not rows[:, [c for c in range(8) if not 4 * k <= c < 4 * k + 4]].any()
        else:
            np.testing.assert_allclose(rows, table, atol=1e-7)


def test_changing_one_items_label_changes_exactly_its_row():
    layer = _facet_layer("slice")
    before = np.asarray(layer.item_table())
    labels = [np.asarray(v).copy() for v in layer.facet_labels]
    labels[1][5] = (labels[1][5] % 2) + 1  # another label of facet 1 for item 5
    layer.set_item_facets(labels)
    after = np.asarray(layer.item_table())
    changed = np.flatnonzero(np.abs(after - before).sum(axis=1) > 0)
    assert changed.tolist() == [5]
    # Only facet 1's slice of that row moved.
    assert np.allclose(after[5, :4], before[5, :4]) and not np.allclose(after[5, 4:], before[5, 4:])


@pytest.mark.parametrize(
    "labels, message",
    [
        ([np.zeros(10, int), np.zeros(11, int)], r"item_facets\[0\] has shape"),
        ([np.full(11, -1), np.zeros(11, int)], r"item_facets\[0\]\[1\] = -1"),
        ([np.zeros(11, int), np.full(11, 3)], r"item_facets\[1\]\[1\] = 3 is above the facet's 2 labels"),
        ([np.full(11, 1.5), np.zeros(11, int)], r"item_facets\[0\] must hold integer label ids"),
        ([np.zeros(11, int)], "has 1 facets, the layer was built for 2"),
    ],
)
def test_bad_facet_labels_are_refused_naming_the_facet_and_item(labels, message):
    layer = _facet_layer("slice")
    with pytest.raises(ValueError, match=message):
        layer.set_item_facets(labels)


def test_slice_fusion_needs_a_divisible_width():
    with pytest.raises(ValueError, match="divisible by the number of facets"):
        ItemEmbedding(num_items=10, hidden_dim=8, max_len=6, facet_vocab_sizes=[3, 2, 2], facet_fusion="slice")
    with pytest.raises(ValueError, match="facet_fusion='mean'"):
        ItemEmbedding(num_items=10, hidden_dim=8, max_len=6, facet_vocab_sizes=[3], facet_fusion="mean")


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"facet_fusion": "slice"},
        {"facet_fusion": "sum"},
        {"item_content": True, "offset_max_norm": 0.01, "learn_content_scale": True, "row_multiple": 4},
        {"item_content": True, "offset_dropout": 0.5, "seed": 1},  # rows of the non-training table
    ],
)
def test_rows_are_the_tables_rows_read_one_id_at_a_time(kwargs):
    facets = "facet_fusion" in kwargs
    layer = _facet_layer(kwargs["facet_fusion"]) if facets else ItemEmbedding(num_items=10, hidden_dim=8, max_len=6, **kwargs)
    if not facets:
        layer.build((None, 4))
    rng = np.random.default_rng(0)
    for weight in layer.weights:
        if weight.dtype == "float32":  # content and offsets away from their zero start
            weight.assign(rng.normal(scale=0.02, size=weight.shape).astype("float32"))
    ids = np.array([[0, 3, 3, 10], [1, 2, 9, 4]], "int32")  # repeats and the padding id
    np.testing.assert_array_equal(np.asarray(layer.rows(ids)), np.asarray(layer.item_table())[ids])
    # `call` embeds the window through `rows`: the same as through the whole table (its old path).
    embedded, _, _ = layer(ids)
    reference = ItemEmbedding.from_config(layer.get_config())
    reference.build((None, 4))
    reference.set_weights(layer.get_weights())
    reference.rows = lambda item_ids: np.asarray(reference.item_table())[np.asarray(item_ids)]
    np.testing.assert_array_equal(np.asarray(embedded), np.asarray(reference(ids)[0]))
