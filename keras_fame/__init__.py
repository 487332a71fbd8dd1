"""keras-fame: FAME (facet-aware multi-head mixture-of-experts) for sequential recommendation in Keras 3."""

import os as _os

# Quiet TensorFlow's C++ start-up lines (oneDNN, CUDA probing) unless the user chose a level: they are
# noise for the `keras-fame` command and the examples. The level must be set before TensorFlow loads;
# TensorFlow >= 2.21 prints some of them regardless, which `_quiet` drops.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_fame._quiet import tensorflow_startup_lines_dropped

with tensorflow_startup_lines_dropped():
    import keras  # noqa: F401  (loads the backend, and TensorFlow with it)

    if keras.backend.backend() == "tensorflow":
        import tensorflow as _tf

        _tf.config.list_physical_devices()  # CUDA probing happens here, so its "no GPU" line is dropped too

from keras_fame import layers, optimizers, pretraining  # noqa: E402
from keras_fame.data import leave_one_out, read_sequences  # noqa: E402
from keras_fame.evaluation import FullRankingEvaluation, evaluate_model  # noqa: E402
from keras_fame.export import export_saved_model  # noqa: E402
from keras_fame.losses import MaskedSoftmaxCrossEntropy  # noqa: E402
from keras_fame.models import FAME, SASRec  # noqa: E402
from keras_fame.pretraining import FacetContrastivePretrainer  # noqa: E402

__version__ = "0.1.0"
