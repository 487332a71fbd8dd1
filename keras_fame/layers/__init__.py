"""Building blocks: registered, backend-agnostic Keras layers."""

from keras_fame.layers.facet_gated_head import FacetGatedHead, HeadSliceIdentity
from keras_fame.layers.facet_moe_block import FacetMoEBlock
from keras_fame.layers.item_embedding import ItemEmbedding
from keras_fame.layers.item_scores import ItemScores
from keras_fame.layers.last_position import LastPosition
from keras_fame.layers.moe_query_attention import MoEQueryAttention
from keras_fame.layers.ranking import HistoryTopK, NewestItems
from keras_fame.layers.transformer_block import TransformerBlock
