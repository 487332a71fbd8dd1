"""Text-enhanced facet-aware pre-training (FAME+): item text -> facet-aligned item embeddings."""

from keras_fame.pretraining.facet_contrastive_pretrainer import (
    FacetBatches,
    FacetContrastivePretrainer,
    nearest_neighbour_agreement,
    supervised_contrastive_loss,
)
from keras_fame.optimizers import LazyAdam  # noqa: F401  (its home before keras_fame.optimizers)
from keras_fame.pretraining.item_tables import add_items_from_text, pca_item_table, pretrain_item_embeddings, with_padding_row
from keras_fame.pretraining.text_encoder import embed_texts, load_minilm
