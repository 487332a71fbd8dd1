"""Editing a trained model's catalogue: a pre-trained item table, new items, borrowed ID offsets (cold start).

`SequentialRecommender.set_item_embeddings`, `with_new_items` and
`impute_offsets` call these functions; they work on any `SASRec` or `FAME`.
"""

import keras
import numpy as np

from keras_fame.layers.item_embedding import check_item_facets


def set_item_embeddings(model, table, frozen=None):
    """Starts the item table from pre-trained embeddings (e.g. from item text).

    Args:
        model: a built `SASRec` or `FAME`; changed in place.
        table: `[num_items + 1, hidden_dim]`; row 0 (padding) is set to 0.
        frozen: where the table goes. `False`: into the trainable item
            embeddings (a start that training moves). `True` (needs
            `item_content=True`): into the frozen content table, with
            the trainable per-item offsets reset to 0. Defaults to None:
            `True` exactly when the model has `item_content`.

    Raises:
        ValueError: for a table of the wrong shape or with non-finite
            entries, or `frozen=True` without `item_content`.
    """
    layer = model.item_embedding
    table = np.array(table, dtype="float32")
    expected = (model.num_items + 1, model.hidden_dim)
    if table.shape != expected:
        raise ValueError(f"item table of shape {table.shape}, expected [num_items + 1, hidden_dim] = {expected}")
    if not np.isfinite(table).all():
        raise ValueError("the item table has non-finite entries")
    table[0] = 0.0
    table = np.pad(table, [(0, layer.table_rows - len(table)), (0, 0)])  # spare rows of `row_multiple`
    frozen = layer.item_content if frozen is None else bool(frozen)
    if frozen and not layer.item_content:
        raise ValueError("frozen=True needs a model built with item_content=True")
    if frozen:
        layer.content_embeddings.assign(table)
        layer.item_embeddings.assign(np.zeros_like(table))
    else:
        layer.item_embeddings.assign(table)


def with_new_items(model, content_rows, offsets=None, neighbours=10, item_facets=None):
    """A copy of `model` with items `num_items + 1 ..` appended (cold start).

    The new items' rows come from `content_rows` `[new, hidden_dim]`
    (e.g. their text through the same pre-trainer or PCA as the
    catalog). With `item_content=True` they enter the frozen content
    table, with an ID offset given by `offsets`; otherwise they become
    the new rows of the item table. Every other weight is copied. The
    result can be saved, evaluated and exported like any model.

    Args:
        model: a built `SASRec` or `FAME` (not changed).
        content_rows: float `[new, hidden_dim]`.
        offsets: with `item_content`: `None` (the default: offset 0,
            exactly like a trained model's never-seen items), `"neighbours"`
            (each new item takes the similarity-weighted mean offset of its
            `neighbours` content-nearest catalog items with a trained
            offset, `impute_offsets`), or an array `[new, hidden_dim]`.
        neighbours: int, k for `offsets="neighbours"`. Defaults to 10.
        item_facets: for a model built with facets: the new items'
            labels, a list of `K` int arrays `[new]` (0 = no label), so
            that a new item enters with its facet embeddings even
            without an ID history. Defaults to `None` (no labels).

    Returns:
        A new model of the same class with `num_items + new` items.
    """
    rows = np.asarray(content_rows, dtype="float32")
    if rows.ndim != 2 or rows.shape[1] != model.hidden_dim or len(rows) == 0:
        raise ValueError(f"content_rows must be [new_items, {model.hidden_dim}], got {rows.shape}")
    if not np.isfinite(rows).all():
        raise ValueError("content_rows has non-finite entries")
    content = model.item_embedding.item_content
    if offsets is not None and not content:
        raise ValueError("offsets are the ID offsets of item_content=True; this model has a plain item table")
    extra_offsets = np.zeros_like(rows)
    if isinstance(offsets, str):
        if offsets != "neighbours":
            raise ValueError(f'offsets={offsets!r}: expected None, "neighbours" or an array')
    elif offsets is not None:
        extra_offsets = np.asarray(offsets, dtype="float32")
        if extra_offsets.shape != rows.shape or not np.isfinite(extra_offsets).all():
            raise ValueError(f"offsets must be finite and of the shape of content_rows {rows.shape}")
    layer = model.item_embedding
    new_labels = [np.zeros(len(rows), np.int64) for _ in layer.facet_labels]
    if item_facets is not None:
        if not layer.facet_labels:
            raise ValueError("item_facets given, but this model was built without facets")
        if len(item_facets) != len(layer.facet_labels):
            raise ValueError(f"item_facets has {len(item_facets)} facets, the model has {len(layer.facet_labels)}")
        for k, labels in enumerate(item_facets):
            labels = np.asarray(labels)
            if labels.shape != (len(rows),):
                raise ValueError(f"item_facets[{k}] has shape {labels.shape}, expected ({len(rows)},), one per new item")
            new_labels[k] = labels
        # The same checks as the constructor's, on the new rows (a row 0 in front, which they ignore).
        check_item_facets([np.concatenate([[0], labels]) for labels in new_labels], len(rows), layer.facet_vocab_sizes)
    config = model.get_config()
    config["num_items"] = model.num_items + len(rows)
    grown = type(model).from_config(config)
    # The item-indexed weights get the new rows after the old items' (spare rows of `row_multiple` are
    # dropped and re-padded): offsets (with content) or the content rows, and the facet labels.
    item_rows = {layer.item_embeddings.path: extra_offsets if content else rows}
    if content:
        item_rows[layer.content_embeddings.path] = rows
    item_rows.update({v.path: labels for v, labels in zip(layer.facet_labels, new_labels)})
    for old, new in zip(model.weights, grown.weights):
        value = np.asarray(old)
        if old.path in item_rows:
            value = np.concatenate([value[: model.num_items + 1], np.asarray(item_rows[old.path], dtype=value.dtype)])
            value = np.pad(value, [(0, new.shape[0] - len(value))] + [(0, 0)] * (value.ndim - 1))
        new.assign(value)
    if isinstance(offsets, str):
        # The new rows' offsets are still 0, so impute_offsets' default donors are exactly the trained items.
        grown.impute_offsets(np.arange(model.num_items + 1, grown.num_items + 1), neighbours=neighbours)
    return grown


def impute_offsets(model, items, neighbours=10, donors=None, chunk_size=None):
    """Gives `items` the ID offsets of their content-nearest trained items (cold start).

    With `item_content=True` an item that training never reached keeps
    offset 0 and competes from its content alone, while every trained
    item carries a learned offset (its collaborative signal, popularity
    included). This sets each item's offset to the mean of the effective
    offsets of its
    `neighbours` nearest donors by cosine similarity of the content rows,
    weighted by the positive part of the similarity (uniform if none is
    positive): a new item borrows the behaviour of the items whose text
    it resembles, the usual content-to-collaborative mapping of the
    cold-start literature in its simplest, training-free form. Changes
    the model in place; content rows and other items are untouched.

    Args:
        model: a built model with `item_content=True`; changed in place.
        items: int ids in `1..num_items` whose offsets are replaced.
        neighbours: int, k. Defaults to 10.
        donors: int ids to borrow from. Defaults to every item outside
            `items` whose offset is not zero.
        chunk_size: how many of `items` are compared with the donors at
            once; the peak is `chunk_size x len(donors)` float32
            similarities. Defaults to at most 2^25 of them (128 MB; a
            catalog of 10^6 donors goes 33 items at a time).

    Returns:
        float32 `[len(items), hidden_dim]`, the offsets set.
    """
    layer = model.item_embedding
    if not layer.item_content:
        raise ValueError("impute_offsets needs a model built with item_content=True (it has no ID offsets)")
    items = np.asarray(items, dtype=np.int64).reshape(-1)
    if len(items) == 0 or items.min() < 1 or items.max() > model.num_items:
        raise ValueError(f"items must be non-empty ids in 1..{model.num_items}")
    content = np.asarray(layer.content_embeddings, dtype=np.float32)[: model.num_items + 1]
    raw = np.asarray(layer.item_embeddings, dtype=np.float32)  # with the spare rows of `row_multiple`, if any
    scale = float(np.asarray(layer.content_scale)) if layer.learn_content_scale else 1.0
    effective = np.asarray(keras.ops.convert_to_numpy(layer.item_table()), np.float32) - scale * content
    if donors is None:
        donors = np.setdiff1d(np.flatnonzero(np.abs(raw[: model.num_items + 1]).sum(axis=1) > 0), items)
        donors = donors[donors > 0]
    donors = np.asarray(donors, dtype=np.int64).reshape(-1)
    if len(donors) == 0 or donors.min() < 1 or donors.max() > model.num_items:
        raise ValueError(f"donors must be non-empty ids in 1..{model.num_items} (no item has a trained offset?)")
    k = min(int(neighbours), len(donors))
    if k < 1:
        raise ValueError(f"neighbours={neighbours} must be at least 1")
    if chunk_size is None:
        chunk_size = max(1, min(4096, 2**25 // len(donors)))
    unit = content / np.maximum(np.linalg.norm(content, axis=1, keepdims=True), 1e-12)
    donor_unit, donor_offsets = unit[donors], effective[donors]
    result = np.empty((len(items), model.hidden_dim), np.float32)
    for start in range(0, len(items), chunk_size):
        similarity = unit[items[start : start + chunk_size]] @ donor_unit.T
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.maximum(np.take_along_axis(similarity, nearest, axis=1), 0.0)
        total = weights.sum(axis=1, keepdims=True)
        weights = np.where(total > 0, weights / np.maximum(total, 1e-12), 1.0 / k)
        result[start : start + chunk_size] = np.einsum("qk,qkd->qd", weights, donor_offsets[nearest])
    raw[items] = result
    layer.item_embeddings.assign(raw)
    return result
