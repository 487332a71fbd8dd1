"""SASRec and FAME as functional Keras models."""

from keras_fame.models.backbone import BackboneConfig

from keras_fame.models.fame import FAME
from keras_fame.models.sasrec import SASRec
from keras_fame.models.sequential_recommender import scoring_dtype
