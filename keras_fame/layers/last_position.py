import keras


@keras.saving.register_keras_serializable(package="keras_fame")
class LastPosition(keras.layers.Layer):
    """Takes the newest position of a left-padded sequence, `x[:, -1]`.

    SASRec and FAME read the user's representation at the last item (§4.2.1).
    A nested input (a scoring head's `(features, gate_context)`) is cut
    tensor by tensor.

    Example:
    >>> tuple(LastPosition()(keras.ops.ones((2, 5, 3, 4))).shape)
    (2, 3, 4)
    """

    def call(self, inputs):
        return keras.tree.map_structure(lambda x: x[:, -1], inputs)

    def compute_output_spec(self, inputs):
        def spec(x):  # floating inputs are autocast to the layer's compute dtype
            dtype = self.compute_dtype if keras.backend.is_float_dtype(x.dtype) else x.dtype
            return keras.KerasTensor((x.shape[0],) + tuple(x.shape[2:]), dtype=dtype)

        return keras.tree.map_structure(spec, inputs)
