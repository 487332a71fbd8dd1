"""Reading, splitting and batching interaction sequences."""

from keras_fame.data.pipeline import TrainingBatches, default_buckets, make_tf_dataset
from keras_fame.data.sequences import DataFormatError, SequenceData, from_lists, read_sequences, write_sequences
from keras_fame.data.split import EvaluationSet, LeaveOneOutSplit, leave_one_out, pad_left
