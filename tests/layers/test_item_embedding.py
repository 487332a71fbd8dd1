import numpy as np

from keras_fame.layers import ItemEmbedding, TransformerBlock
from keras_fame.testing import run_layer_test


def test_layer_contract():
    ids = np.array([[0, 0, 3, 7], [1, 2, 3, 4]], "int32")
    run_layer_test(
        ItemEmbedding,
        {"num_items": 10, "hidden_dim": 8, "max_len": 6, "dropout": 0.1},
        (ids,),
        expected_output_shape=(2, 4, 8),
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


def test_transformer_block_contract_and_causality():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    mask = np.ones((2, 5), bool)
    mask[1, :2] = False
    run_layer_test(
        TransformerBlock,
        {"hidden_dim": 8, "num_heads": 2, "dropout": 0.1},
        (x, mask),
        expected_output_shape=(2, 5, 8),
        # Q/K/V kernels+biases (6), 2 LayerNorms (4), FFN (4)
        expected_num_trainable_weights=14,
    )
    block = TransformerBlock(hidden_dim=8, num_heads=2)
    base = np.asarray(block(x, mask))
    later = x.copy()
    later[:, 3:] += 1.0
    np.testing.assert_allclose(np.asarray(block(later, mask))[:, :3], base[:, :3], atol=1e-5)
    assert np.all(base[1, :2] == 0)
