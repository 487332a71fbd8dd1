"""keras-fame: FAME (facet-aware multi-head mixture-of-experts) for sequential recommendation in Keras 3."""

import os as _os

# Quiet TensorFlow's C++ start-up lines (oneDNN, CUDA probing) unless the user chose a level: they are
# noise for the `keras-fame` command and the examples, and must be set before TensorFlow loads.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_fame import layers, pretraining
from keras_fame.data import leave_one_out, read_sequences
from keras_fame.evaluation import FullRankingEvaluation, evaluate_model
from keras_fame.export import export_saved_model
from keras_fame.losses import MaskedSoftmaxCrossEntropy
from keras_fame.models import FAME, SASRec
from keras_fame.pretraining import FacetContrastivePretrainer

__version__ = "0.1.0"
