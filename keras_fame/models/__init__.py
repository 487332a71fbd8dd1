"""SASRec and FAME as functional Keras models."""

from keras_fame.models.fame import FAME
from keras_fame.models.sasrec import SASRec
