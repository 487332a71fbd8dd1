import keras


@keras.saving.register_keras_serializable(package="keras_fame")
class LastPosition(keras.layers.Layer):
    """Takes the newest position of a left-padded sequence, `x[:, -1]`.

    SASRec and FAME read the user's representation at the last item (§4.2.1).

    Example:
    >>> tuple(LastPosition()(keras.ops.ones((2, 5, 3, 4))).shape)
    (2, 3, 4)
    """

    def call(self, inputs):
        return inputs[:, -1]

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(input_shape[2:])
