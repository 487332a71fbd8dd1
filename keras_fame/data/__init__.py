"""Reading, splitting and batching interaction sequences."""

from keras_fame.data.item_text import FACETS, ItemText, facets_for_heads, read_item_text
from keras_fame.data.pipeline import TrainingBatches, default_buckets, make_tf_dataset
from keras_fame.data.sequences import DataFormatError, SequenceData, from_lists, read_sequences, write_sequences
from keras_fame.data.split import EvaluationSet, LeaveOneOutSplit, every_prefix_rows, leave_one_out, pad_left
from keras_fame.data.item_facets import ItemFacets, parse_facet_names, read_item_facets
from keras_fame.data.sampled_batches import SAMPLERS, SampledBatches
