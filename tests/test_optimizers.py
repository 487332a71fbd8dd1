import keras
import numpy as np
import pytest

from keras_fame.optimizers import LazyAdam, make_optimizer


def adam_reference(w, m, v, g, step, lr=0.01, beta_1=0.9, beta_2=0.999, eps=1e-7):
    """One Adam step in numpy (Kingma & Ba, Algorithm 1, Keras' epsilon placement)."""
    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * g * g
    alpha = lr * np.sqrt(1 - beta_2**step) / (1 - beta_1**step)
    return w - alpha * m / (np.sqrt(v) + eps), m, v


def test_lazy_adam_matches_adam_when_every_gradient_is_nonzero():
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(3, 2)).astype("float32") for _ in range(2)]
    grads = [[rng.normal(size=(3, 2)).astype("float32") + 5 for _ in range(2)] for _ in range(3)]
    results = []
    for optimizer in (keras.optimizers.Adam(0.01), LazyAdam(0.01)):
        variables = [keras.Variable(w) for w in weights]
        for step_grads in grads:
            optimizer.apply(step_grads, variables)
        results.append([np.array(v) for v in variables])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_lazy_adam_leaves_a_variable_with_zero_gradient_and_its_moments_alone():
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(4, 3)).astype("float32")
    g = rng.normal(size=(4, 3)).astype("float32")
    variable = keras.Variable(w0)
    optimizer = LazyAdam(0.01)
    optimizer.apply([g], [variable])
    after_one = np.array(variable)
    moments = [np.array(optimizer._momentums[0]), np.array(optimizer._velocities[0])]
    optimizer.apply([np.zeros_like(g)], [variable])
    np.testing.assert_array_equal(np.array(variable), after_one)
    np.testing.assert_array_equal(np.array(optimizer._momentums[0]), moments[0])
    np.testing.assert_array_equal(np.array(optimizer._velocities[0]), moments[1])
    # Adam moves it: its momentum is not zero.
    adam, moved = keras.optimizers.Adam(0.01), keras.Variable(w0)
    adam.apply([g], [moved])
    adam.apply([np.zeros_like(g)], [moved])
    assert not np.allclose(np.array(moved), after_one)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="row-sparse gradients are TensorFlow's")
@pytest.mark.parametrize("amsgrad", [False, True])
def test_lazy_adam_updates_only_the_rows_of_a_row_sparse_gradient(amsgrad):
    import tensorflow as tf

    rng = np.random.default_rng(2)
    table0 = rng.normal(size=(10, 4)).astype("float32")
    variable = keras.Variable(table0)
    optimizer = LazyAdam(0.01, amsgrad=amsgrad)
    w, m, v, v_hat = table0.astype("float64"), np.zeros((10, 4)), np.zeros((10, 4)), np.zeros((10, 4))
    for step, ids in enumerate(([1, 3, 3, 7], [3, 4], [0, 9, 9, 9]), start=1):
        upstream = rng.normal(size=(len(ids), 4)).astype("float32")
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.gather(variable.value, ids) * upstream)
        (gradient,) = tape.gradient(loss, [variable.value])
        assert isinstance(gradient, tf.IndexedSlices)
        optimizer.apply([gradient], [variable])
        g = np.zeros((10, 4))
        np.add.at(g, ids, upstream)  # repeated rows sum
        rows = np.unique(ids)
        m[rows] = 0.9 * m[rows] + 0.1 * g[rows]
        v[rows] = 0.999 * v[rows] + 0.001 * g[rows] ** 2
        v_hat[rows] = np.maximum(v_hat[rows], v[rows])
        alpha = 0.01 * np.sqrt(1 - 0.999**step) / (1 - 0.9**step)
        w[rows] -= alpha * m[rows] / (np.sqrt(v_hat[rows] if amsgrad else v[rows]) + 1e-7)
        np.testing.assert_allclose(np.array(variable), w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.array(optimizer._momentums[0]), m, rtol=1e-5, atol=1e-7)
    untouched = [2, 5, 6, 8]
    np.testing.assert_array_equal(np.array(variable)[untouched], table0[untouched])


def test_lazy_adam_one_step_equals_numpy_adam():
    rng = np.random.default_rng(3)
    w0, g = rng.normal(size=(5,)).astype("float32"), rng.normal(size=(5,)).astype("float32")
    variable = keras.Variable(w0)
    LazyAdam(0.01).apply([g], [variable])
    expected, _, _ = adam_reference(w0.astype("float64"), 0.0, 0.0, g.astype("float64"), step=1)
    np.testing.assert_allclose(np.array(variable), expected, rtol=1e-5)


def test_make_optimizer_by_name_and_serialisation():
    assert type(make_optimizer("adam", 0.002)) is keras.optimizers.Adam
    lazy = make_optimizer("lazy_adam", 0.002)
    assert isinstance(lazy, LazyAdam) and float(lazy.learning_rate) == pytest.approx(0.002)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(lazy))
    assert isinstance(restored, LazyAdam) and restored.get_config() == lazy.get_config()
    with pytest.raises(ValueError, match="optimizer='sgd'"):
        make_optimizer("sgd")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="row-sparse gradients are TensorFlow's")
@pytest.mark.parametrize("facets", [False, True])
@pytest.mark.parametrize("optimizer", ["lazy_adam", "adam"])
def test_sampled_softmax_step_with_lazy_adam_leaves_unsampled_items_alone(optimizer, facets):
    import keras_fame
    from keras_fame.data.sampled_batches import SampledBatches
    from keras_fame.losses import SampledSoftmaxCrossEntropy
    from keras_fame.training import SampledSoftmaxTrainer

    class Batches:
        epoch = 0

        def __len__(self):
            return 2

        def __getitem__(self, index):
            return ids[index][:, :-1], ids[index][:, 1:]

    num_items, rng = 500, np.random.default_rng(4)
    # Step 0 sees items 1..39 only, step 1 items 40..79 only (in-batch negatives: no other item is scored).
    ids = [rng.integers(1, 40, size=(8, 9)).astype("int32"), rng.integers(40, 80, size=(8, 9)).astype("int32")]
    data = SampledBatches(Batches(), num_items, num_negatives=1, sampler="in_batch", item_counts=np.ones(num_items + 1))
    # With facets the fused rows are gathered, never the whole fused table: the gradient stays row-sparse.
    item_facets = [rng.integers(0, 6, num_items + 1).astype("int32"), rng.integers(0, 9, num_items + 1).astype("int32")]
    model = keras_fame.FAME(num_items, hidden_dim=8, num_heads=2, num_experts=2, max_len=8,
                            item_facets=item_facets if facets else None)
    trainer = SampledSoftmaxTrainer(model)
    trainer.compile(optimizer=make_optimizer(optimizer, 0.01), loss=SampledSoftmaxCrossEntropy())
    table = model.item_embedding.item_embeddings
    trainer.train_on_batch(*data[0])
    before = np.array(table)
    trainer.train_on_batch(*data[1])
    changed = np.flatnonzero(np.any(np.array(table) != before, axis=1))
    if optimizer == "lazy_adam":
        assert len(changed) and changed.min() >= 40 and changed.max() < 80, changed
    else:  # Adam's momentum still moves step 0's items: the case LazyAdam exists for
        assert np.any(changed < 40), changed
