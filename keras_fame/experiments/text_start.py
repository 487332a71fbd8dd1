"""The text start of the item table (FAME+): the settings, and the table from item text."""

import dataclasses
import os
import time

from keras_fame.utils import save_model_atomic


@dataclasses.dataclass(frozen=True)
class TextStart:
    """How the item table starts from item text (FAME+, `keras_fame.pretraining`).

    Attributes:
        mode: `"pca"` (PCA of the text embeddings, the plain start) or
            `"facet"` (`FacetContrastivePretrainer`, alternating SupCon per
            facet; one head per SASRec/FAME head).
        frozen: keep the text table frozen and learn a per-item ID offset
            (`item_content=True`) instead of training the table from the
            text start.
        item_text_file: the `*_item_text.jsonl` file.
        cache_dir: where text embeddings are cached.
        epochs, temperature, head_layers, head_hidden_dim, learning_rate:
            of the facet pre-training.
        whiten: PCA only: equalise the components' variances.
    """

    mode: str
    item_text_file: str
    frozen: bool = False
    cache_dir: str = ".cache/text"
    epochs: int = 20
    temperature: float = 0.1
    head_layers: int = 1
    head_hidden_dim: int = 256
    learning_rate: float = 1e-3
    whiten: bool = False

    def __post_init__(self):
        if self.mode not in ("pca", "facet"):
            raise ValueError(f"text start mode {self.mode!r} is not 'pca' or 'facet'")


def text_item_table(text_start, num_items, hidden_dim, num_heads, seed=0, verbose=1, encoder=None, save_pretrainer=None):
    """Reads item text, embeds it (cached) and builds the `[num_items + 1, d]` start table.

    `encoder` is passed to `embed_texts` (default: all-MiniLM-L6-v2). With
    `save_pretrainer` (a `.keras` path) the trained pre-trainer is saved
    there, to embed items added later (`add_items_from_text`).

    Returns:
        `(table, report)`; the report holds the text statistics, the
        encoder's time, and for `"facet"` the pre-training's time, loss
        and per-head label agreement.
    """
    from keras_fame.data.item_text import read_item_text
    from keras_fame.pretraining import embed_texts, pca_item_table, pretrain_item_embeddings

    item_text = read_item_text(text_start.item_text_file, num_items=num_items)
    start = time.perf_counter()
    features = embed_texts(item_text.texts[1:], encoder=encoder, cache_dir=text_start.cache_dir, verbose=verbose)
    report = {
        "item_text_file": os.path.abspath(text_start.item_text_file),
        "attribute_only_items": len(item_text.attribute_only),
        "facet_coverage": item_text.coverage(),
        "text_embedding_seconds": time.perf_counter() - start,
        "text_dim": int(features.shape[1]),
    }
    if text_start.mode == "pca":
        table = pca_item_table(features, hidden_dim, whiten=text_start.whiten)
    else:
        table, report["pretraining"], pretrainer = pretrain_item_embeddings(
            features,
            item_text.head_labels(num_heads),
            hidden_dim,
            epochs=text_start.epochs,
            learning_rate=text_start.learning_rate,
            seed=seed,
            verbose=2 if verbose else 0,
            temperature=text_start.temperature,
            head_layers=text_start.head_layers,
            head_hidden_dim=text_start.head_hidden_dim,
            return_model=True,
        )
        if save_pretrainer:
            save_model_atomic(pretrainer, save_pretrainer)
            report["pretrainer"] = os.path.abspath(save_pretrainer)
    return table, report
