"""Fitting SASRec and FAME: trainers (objectives), callbacks (timing, NaN stop, exact resume), early stopping."""

from keras_fame.training.callbacks import EpochTimer, NonFiniteLossGuard, TrainingCheckpoint
from keras_fame.training.fit import fit_with_early_stopping
from keras_fame.training.trainers import (
    AllPositionsTrainer,
    LastPositionTrainer,
    RecommenderTrainer,
    SampledSoftmaxTrainer,
)
