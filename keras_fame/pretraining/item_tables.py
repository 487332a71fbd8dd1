"""Item tables from text: the plain PCA start, and the facet-contrastive pre-training run.

Both return `[num_items + 1, d]` float32 tables (row 0 = padding = 0) at the
scale of the sequence models' embedding initialiser (entries with RMS
`std`, 0.02 by default), ready for `model.set_item_embeddings(table)`.
"""

import time

import keras
import numpy as np

from keras_fame.pretraining.facet_contrastive_pretrainer import (
    FacetBatches,
    FacetContrastivePretrainer,
    nearest_neighbour_agreement,
)
from keras_fame.optimizers import LazyAdam


def with_padding_row(table):
    """Prepends the padding row (zeros) to an `[num_items, d]` table."""
    table = np.asarray(table, dtype=np.float32)
    return np.concatenate([np.zeros((1, table.shape[1]), np.float32), table])


def pca_item_table(text_features, dim, std=0.02, whiten=False):
    """The plain text start: PCA of the text embeddings, scaled to the initialiser's std.

    Args:
        text_features: `[num_items, text_dim]` (items 1..num_items, no padding row).
        dim: `d`, the number of principal components kept.
        std: RMS of the entries of the result.
        whiten: scale every component to the same variance before the
            global rescale (by default components keep their variances).

    Returns:
        float32 `[num_items + 1, dim]`, row 0 zero.

    Example:
    >>> table = pca_item_table(np.random.default_rng(0).normal(size=(50, 8)), dim=4)
    >>> table.shape, float(np.abs(table[0]).sum()), round(float(np.sqrt(np.mean(table[1:] ** 2))), 4)
    ((51, 4), 0.0, 0.02)
    """
    x = np.asarray(text_features, dtype=np.float64)
    if dim > min(x.shape):
        raise ValueError(f"dim={dim} principal components from features of shape {x.shape}")
    x = x - x.mean(axis=0)
    _, singular, vt = np.linalg.svd(x, full_matrices=False)
    projected = x @ vt[:dim].T
    if whiten:
        projected = projected / np.maximum(singular[:dim] / np.sqrt(len(x)), 1e-12)
    projected *= std / np.sqrt(np.mean(projected**2))
    return with_padding_row(projected)


def pretrain_item_embeddings(
    text_features,
    head_labels,
    hidden_dim,
    epochs=20,
    batch_size=256,
    learning_rate=1e-3,
    seed=0,
    verbose=1,
    return_model=False,
    **pretrainer_kwargs,
):
    """Runs `FacetContrastivePretrainer` and returns the item table and a report.

    Args:
        text_features: `[num_items, text_dim]` (items 1..num_items).
        head_labels: int `[num_items + 1, H]` (`ItemText.head_labels(H)`).
        hidden_dim: `d` of the sequence model; `d' = d / H`.
        epochs, batch_size, learning_rate, seed: of the `fit`.
        verbose: passed to `fit`.
        return_model: also return the trained pre-trainer (keep it to embed
            items added later, `add_items_from_text`).
        **pretrainer_kwargs: `FacetContrastivePretrainer` arguments
            (`temperature`, `head_layers`, `head_hidden_dim`, `output_std`, ...).

    Returns:
        `(table, report)`: float32 `[num_items + 1, d]` (row 0 zero) and a
        dict with the wall time, the per-epoch loss, and per head the
        nearest-neighbour label agreement of its facet against chance;
        with `return_model`, `(table, report, pretrainer)`.
    """
    head_labels = np.asarray(head_labels)
    num_heads = head_labels.shape[1]
    if hidden_dim % num_heads:
        raise ValueError(f"hidden_dim={hidden_dim} is not divisible by the {num_heads} heads")
    features = with_padding_row(text_features)
    keras.utils.set_random_seed(seed)
    model = FacetContrastivePretrainer(num_heads=num_heads, head_dim=hidden_dim // num_heads, **pretrainer_kwargs)
    model.adapt(features[1:])
    model.compile(optimizer=LazyAdam(learning_rate=learning_rate))
    batches = FacetBatches(features, head_labels, batch_size=batch_size, seed=seed)
    start = time.perf_counter()
    history = model.fit(batches, epochs=epochs, verbose=verbose)
    seconds = time.perf_counter() - start
    table = model.item_table(features)
    table[0] = 0.0
    agreement = {}
    for h, facet in enumerate(model.facets):
        per_head, chance = nearest_neighbour_agreement(table, head_labels[:, h], num_heads, seed=seed)
        agreement[f"head_{h}_{facet}"] = {"own_head": per_head[h], "all_heads": per_head, "chance": chance}
    report = {
        "seconds": seconds,
        "epochs": epochs,
        "steps_per_epoch": len(batches),
        "loss": [float(v) for v in history.history["loss"]],
        "facets": list(model.facets),
        "config": model.get_config(),
        "nearest_neighbour_label_agreement": agreement,
    }
    return (table, report, model) if return_model else (table, report)


def add_items_from_text(model, pretrainer, texts, encoder=None, batch_size=128, verbose=0, offsets=None, neighbours=10):
    """Appends new items to a trained SASRec/FAME from their text alone (cold start).

    The texts go through the same frozen encoder and the same trained
    `FacetContrastivePretrainer` as the catalog, and the rows are appended
    with `model.with_new_items`: with `item_content=True` they join the
    frozen content table with ID offset 0, exactly like trained items that
    were never seen (or, with `offsets="neighbours"`, the offsets of their
    text-nearest trained items). The new items get ids `model.num_items + 1, ...` in
    order; export the result with `keras_fame.export_saved_model`.

    Args:
        model: a trained `SASRec`/`FAME` whose table came from `pretrainer`.
        pretrainer: the trained `FacetContrastivePretrainer`.
        texts: the new items' texts (`keras_fame.data.item_text.item_text_string`).
        encoder: as in `embed_texts` (default all-MiniLM-L6-v2, as the pipeline).
        offsets, neighbours: as in `model.with_new_items` (`offsets="neighbours"`:
            each new item borrows the ID offsets of its text-nearest trained items).

    Returns:
        The grown model.
    """
    from keras_fame.pretraining.text_encoder import embed_texts

    if pretrainer.num_heads * pretrainer.head_dim != model.hidden_dim:
        raise ValueError(
            f"the pre-trainer makes {pretrainer.num_heads} x {pretrainer.head_dim} dims, the model has {model.hidden_dim}"
        )
    features = embed_texts(list(texts), encoder=encoder, batch_size=batch_size, verbose=verbose)
    return model.with_new_items(pretrainer.item_table(features), offsets=offsets, neighbours=neighbours)
