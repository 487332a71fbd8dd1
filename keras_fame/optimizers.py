"""Optimizers: `LazyAdam`, Adam that leaves alone what a step's gradient does not reach.

Keras 3 ships no row-sparse Adam (`keras.optimizers.Adam` turns an `IndexedSlices` gradient into a
dense update of the whole variable, and keras-rs' sparse embedding tooling targets TPU SparseCores),
so the update below is written from the Adam equations (Kingma & Ba, arXiv:1412.6980, Algorithm 1,
in the "epsilon hat" form that `keras.optimizers.Adam` uses).
"""

import keras
from keras import ops


def _is_row_slices(gradient):
    # Only TensorFlow hands row-sparse gradients (`tf.IndexedSlices`) to `update_step`; JAX and torch
    # gradients are dense arrays. The type test is by name so that this module never imports TensorFlow.
    return type(gradient).__name__ == "IndexedSlices"


@keras.saving.register_keras_serializable(package="keras_fame")
class LazyAdam(keras.optimizers.Adam):
    """Adam that leaves alone what a step's gradient does not reach.

    Where a step reaches a variable, the update is `keras.optimizers.Adam`'s:

        m <- m + (1 - beta_1) (g - m)          v <- v + (1 - beta_2) (g^2 - v)
        w <- w - alpha_t m / (sqrt(v) + epsilon),   alpha_t = lr sqrt(1 - beta_2^t) / (1 - beta_1^t)

    with `t` the optimizer's global step count (`v` replaced by `v_hat = max(v_hat, v)` under `amsgrad`).
    What a step does not reach keeps its weights and its moments, where Adam would decay the moments and
    move the weights by their old momentum:

    - a variable whose dense gradient is exactly zero everywhere (e.g. the heads the facet pre-trainer's
      alternation does not train this step);
    - the rows a row-sparse gradient does not name. TensorFlow hands `update_step` an `IndexedSlices` for
      an embedding lookup (`ops.take(table, ids)`); its rows `R` (repeats summed) are updated by the
      equations above and no other row is read or written, so a step costs `O(|R| d)` instead of
      `O(V d)` on a `[V, d]` item table. JAX and torch gradients are always dense: there a table's
      untouched rows are updated as in Adam unless the whole table's gradient is zero.

    Args:
        learning_rate, beta_1, beta_2, epsilon, amsgrad, **kwargs: as `keras.optimizers.Adam`.
            Defaults to `0.001, 0.9, 0.999, 1e-7, False`.
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 name="lazy_adam", **kwargs):
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         amsgrad=amsgrad, name=name, **kwargs)

    def _step_size(self, learning_rate, dtype):
        step = ops.cast(self.iterations + 1, dtype)
        power_1 = ops.power(ops.cast(self.beta_1, dtype), step)
        power_2 = ops.power(ops.cast(self.beta_2, dtype), step)
        return ops.cast(learning_rate, dtype) * ops.sqrt(1 - power_2) / (1 - power_1)

    def _moments(self, m, v, grad):
        """Adam's new first and second moments from their old values (whole, or some rows)."""
        m = m + (grad - m) * (1 - self.beta_1)
        v = v + (ops.square(grad) - v) * (1 - self.beta_2)
        return m, v

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        m_var, v_var = self._momentums[index], self._velocities[index]
        alpha = self._step_size(learning_rate, variable.dtype)
        if _is_row_slices(gradient):
            import tensorflow as tf  # only reached on the TensorFlow backend

            rows, position = tf.unique(gradient.indices)
            grad = tf.math.unsorted_segment_sum(gradient.values, position, tf.shape(rows)[0])
            grad = ops.cast(grad, variable.dtype)
            m, v = self._moments(ops.take(m_var, rows, axis=0), ops.take(v_var, rows, axis=0), grad)
            self.assign(m_var, tf.IndexedSlices(m, rows))
            self.assign(v_var, tf.IndexedSlices(v, rows))
            if self.amsgrad:
                v = ops.maximum(ops.take(self._velocity_hats[index], rows, axis=0), v)
                self.assign(self._velocity_hats[index], tf.IndexedSlices(v, rows))
            self.assign_sub(variable, tf.IndexedSlices(m * alpha / (ops.sqrt(v) + self.epsilon), rows))
            return
        grad = ops.cast(gradient, variable.dtype)
        active = ops.any(ops.not_equal(grad, 0))
        old_m, old_v = ops.convert_to_tensor(m_var), ops.convert_to_tensor(v_var)
        m, v = self._moments(old_m, old_v, grad)
        self.assign(m_var, ops.where(active, m, old_m))
        self.assign(v_var, ops.where(active, v, old_v))
        if self.amsgrad:
            old_hat = ops.convert_to_tensor(self._velocity_hats[index])
            v = ops.maximum(old_hat, v)
            self.assign(self._velocity_hats[index], ops.where(active, v, old_hat))
        delta = m * alpha / (ops.sqrt(v) + self.epsilon)
        self.assign_sub(variable, ops.where(active, delta, ops.zeros_like(delta)))


OPTIMIZERS = ("adam", "lazy_adam")


def make_optimizer(name="adam", learning_rate=1e-3):
    """The training optimizer by name.

    Args:
        name: `"adam"` (`keras.optimizers.Adam`) or `"lazy_adam"` (`LazyAdam`). Defaults to `"adam"`.
        learning_rate: positive float. Defaults to `1e-3`.

    Returns:
        A fresh optimizer with `beta_1 = 0.9`, `beta_2 = 0.999`.

    Raises:
        ValueError: `name` is not one of `OPTIMIZERS`.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer={name!r}: must be one of {', '.join(OPTIMIZERS)}")
    kind = LazyAdam if name == "lazy_adam" else keras.optimizers.Adam
    return kind(learning_rate=learning_rate, beta_1=0.9, beta_2=0.999)
