"""Item text and facet labels for text-enhanced pre-training (FAME+).

Reads the `*_item_text.jsonl` files of the S3-Rec family (one JSON object
per item id `1..num_items`; see `shared/data/README.md`) and, optionally,
the S3-Rec `*_item2attributes.json` (+ `*_item2attributes_names.json`) files,
and returns for every item one text string and its facet labels.

**The text template** (one place: `item_text_string`)::

    "<title or phrase>. Brand: <brand>. Category: <a> > <b> > <c>"

- The first part is the product title where the row has one (`title`,
  Beauty), otherwise the short generated phrase `idgenrec_text` (Toys and
  the other Amazon sets have no titles in any public copy: the phrase is
  title-derived and lossy), otherwise a generic `text` field.
- `Brand:` and `Category:` are left out when the item has none. HTML
  entities in names are decoded (`Melissa &amp; Doug` -> `Melissa & Doug`).
- An item with neither title nor phrase gets attribute-only text
  (`"Brand: X. Category: ..."`), and is counted in `ItemText.attribute_only`;
  an item with no text and no attributes at all raises (never an empty
  string that would embed to an arbitrary vector).

**Facets** (columns of `ItemText.facet_labels`, `FACETS`):

0. `brand`: the first attribute of the item when it is a brand. S3-Rec lists
   the brand first; an attribute is taken as a brand when it never occurs at
   a later position of any item (a category id that starts an item without a
   brand also occurs after brands elsewhere). Attributes whose name is null
   (Toys' brand-slot placeholder, id 1) or a placeholder word
   (`PLACEHOLDER_BRANDS`, e.g. Beauty's "Unknown") are *no label*, and stay
   out of the text.
1. `category_level_1`, 2. `category_level_2`, 3. `category_leaf`: levels of
   the item's first category path. Paths are the remaining attributes; a
   null-named attribute (Toys' top levels 2, 231, 479) or a repeated
   level-1 category starts a new path. The leaf is the last element of the
   first path (it equals level 1 or 2 for short paths).

A label is `-1` where the item has no value for that facet; such items are
left out of that facet's positives and anchors during pre-training.
`facets_for_heads(H)` maps `H` heads to facets.
"""

import dataclasses
import html
import json
import os

import numpy as np

from keras_fame.data.sequences import DataFormatError

FACETS = ("brand", "category_level_1", "category_level_2", "category_leaf")

# Brand names that mean "no brand" (compared case-insensitively).
PLACEHOLDER_BRANDS = frozenset({"unknown", "n/a", "na", "none", "no brand", "generic"})

# Which facets `H` heads get, in head order (beyond 4, facets repeat in this order).
_HEAD_FACETS = {
    1: ("category_leaf",),
    2: ("brand", "category_leaf"),
    3: ("brand", "category_level_1", "category_leaf"),
    4: ("brand", "category_level_1", "category_level_2", "category_leaf"),
}


def facets_for_heads(num_heads):
    """The facet each of `num_heads` heads is organised by, in head order.

    H=1: leaf category; H=2: brand, leaf category; H=3: brand, level 1, leaf;
    H=4: brand, level 1, level 2, leaf. With more heads than facets the four
    facets repeat in that order (two heads then share a facet but start from
    different random weights).

    Example:
    >>> facets_for_heads(2)
    ('brand', 'category_leaf')
    """
    num_heads = int(num_heads)
    if num_heads < 1:
        raise ValueError(f"num_heads={num_heads} must be at least 1")
    if num_heads in _HEAD_FACETS:
        return _HEAD_FACETS[num_heads]
    return tuple(_HEAD_FACETS[4][h % 4] for h in range(num_heads))


@dataclasses.dataclass(frozen=True)
class ItemText:
    """Per-item text and facet labels; index = item id (row 0 = padding).

    Attributes:
        texts: list of `num_items + 1` strings (`texts[0] == ""`).
        facet_labels: int32 `[num_items + 1, len(FACETS)]`, attribute ids
            (or -1 = no label); row 0 is all -1.
        label_names: dict attribute id -> name (decoded), for reports.
        num_items: the largest item id.
        attribute_only: item ids whose text comes from attributes alone.
        source: the file read.
    """

    texts: list
    facet_labels: np.ndarray
    label_names: dict
    num_items: int
    attribute_only: tuple = ()
    source: str = "<memory>"

    def labels(self, facet):
        """`[num_items + 1]` labels of one facet (a name from `FACETS` or its index)."""
        index = FACETS.index(facet) if isinstance(facet, str) else int(facet)
        return self.facet_labels[:, index]

    def head_labels(self, num_heads):
        """`[num_items + 1, num_heads]` labels, head `h` getting `facets_for_heads(H)[h]`."""
        return np.stack([self.labels(f) for f in facets_for_heads(num_heads)], axis=1)

    def coverage(self):
        """Fraction of items (1..num_items) with a label, and number of distinct labels, per facet."""
        out = {}
        for i, name in enumerate(FACETS):
            column = self.facet_labels[1:, i]
            out[name] = {
                "labelled": float(np.mean(column >= 0)) if len(column) else 0.0,
                "distinct": int(np.unique(column[column >= 0]).size),
            }
        return out


def item_text_string(title, brand=None, categories=()):
    """The one text template: `"<title>. Brand: <brand>. Category: <a> > <b>"`.

    Example:
    >>> item_text_string("lego star wars x-wing", "LEGO", ["Building Toys", "Building Sets"])
    'lego star wars x-wing. Brand: LEGO. Category: Building Toys > Building Sets'
    >>> item_text_string("", "OPI", [])
    'Brand: OPI'
    """
    parts = []
    if title:
        parts.append(title.strip().rstrip("."))
    if brand:
        parts.append(f"Brand: {brand}")
    if categories:
        parts.append("Category: " + " > ".join(categories))
    return ". ".join(parts)


def _clean(name):
    return None if name is None else html.unescape(str(name)).strip() or None


def _read_jsonl(path):
    """Rows of a JSON-lines item file, checked; returns {item_id: (line, row)}."""
    rows = {}
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if not raw.strip():
                raise DataFormatError(path, line_no, "blank line")
            try:
                row = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise DataFormatError(path, line_no, f"not valid JSON ({err})") from None
            if not isinstance(row, dict):
                raise DataFormatError(path, line_no, f"expected a JSON object, got {type(row).__name__}")
            item = row.get("item_id")
            if isinstance(item, bool) or not isinstance(item, int):
                raise DataFormatError(path, line_no, f"item_id must be an integer, got {item!r}")
            if item < 1:
                raise DataFormatError(path, line_no, f"item_id {item} is not positive")
            if item in rows:
                raise DataFormatError(path, line_no, f"item_id {item} repeats line {rows[item][0]}")
            for key in ("title", "idgenrec_text", "text"):
                if row.get(key) is not None and not isinstance(row[key], str):
                    raise DataFormatError(path, line_no, f"{key} must be a string, got {type(row[key]).__name__}")
            ids = row.get("s3rec_attribute_ids")
            if ids is not None and (
                not isinstance(ids, list) or not all(isinstance(a, int) and not isinstance(a, bool) and a > 0 for a in ids)
            ):
                raise DataFormatError(path, line_no, f"s3rec_attribute_ids must be a list of positive integers, got {ids!r}")
            names = row.get("attributes")
            if names is not None:
                if not isinstance(names, list) or not all(n is None or isinstance(n, str) for n in names):
                    raise DataFormatError(path, line_no, "attributes must be a list of strings or nulls")
                if ids is not None and len(names) != len(ids):
                    raise DataFormatError(
                        path, line_no, f"{len(names)} attribute names for {len(ids)} s3rec_attribute_ids"
                    )
            rows[item] = (line_no, row)
    if not rows:
        raise DataFormatError(path, None, "no items in the file")
    return rows


def _load_json_object(path, what):
    try:
        with open(path) as f:
            raw = json.load(f)
    except json.JSONDecodeError as err:
        raise DataFormatError(path, err.lineno, f"not valid JSON ({err.msg})") from None
    if not isinstance(raw, dict):
        raise DataFormatError(path, 1, f"expected one JSON object: {what}")
    return raw


def _read_attributes(path):
    """S3-Rec `item2attributes.json` -> {item id: [attribute ids]}."""
    attributes = {}
    for key, ids in _load_json_object(path, "item id -> list of attribute ids").items():
        if not str(key).isdigit() or int(key) < 1:
            raise DataFormatError(path, None, f"key {key!r} is not a positive item id")
        if not isinstance(ids, list) or not all(isinstance(a, int) and not isinstance(a, bool) and a > 0 for a in ids):
            raise DataFormatError(path, None, f"item {key}: attribute ids must be positive integers, got {ids!r}")
        attributes[int(key)] = ids
    return attributes


def _read_names(path):
    """`item2attributes_names.json` -> {attribute id: decoded name or None}."""
    raw = _load_json_object(path, "attribute id -> name")
    bad = next((k for k, v in raw.items() if not str(k).isdigit() or not (v is None or isinstance(v, str))), None)
    if bad is not None:
        raise DataFormatError(path, None, f"entry {bad!r}: keys must be attribute ids and names strings or null")
    return {int(k): _clean(v) for k, v in raw.items()}


def _facet_labels(attribute_lists, names):
    """`[num_items + 1, 4]` labels from per-item attribute id lists (see the module docstring)."""
    num_rows = len(attribute_lists)
    labels = np.full((num_rows, len(FACETS)), -1, dtype=np.int32)
    later = set()  # ids that occur after the first position somewhere
    for ids in attribute_lists:
        later.update(ids[1:])
    # Level-1 categories: the first category of each item, found after the brand test.
    paths = []
    for item, ids in enumerate(attribute_lists):
        if not ids:
            paths.append([])
            continue
        first = ids[0]
        if first not in later:  # a brand (or the brand-slot placeholder)
            name = names.get(first, "")
            # A null name is the brand-slot placeholder; some brands are placeholder words.
            if name is not None and name.lower() not in PLACEHOLDER_BRANDS:
                labels[item, 0] = first
            ids = ids[1:]
        paths.append(list(ids))
    level_one = set()
    for ids in paths:
        named = [a for a in ids if names.get(a, "") is not None]
        if named:
            level_one.add(named[0])
    for item, ids in enumerate(paths):
        path, started = [], False
        for a in ids:
            if names.get(a, "") is None:  # a top-level separator (Toys)
                if started:
                    break
                continue
            if path and a in level_one:
                break  # a level-1 category after the first opens a second path
            path.append(a)
            started = True
        if path:
            labels[item, 1] = path[0]
            if len(path) > 1:
                labels[item, 2] = path[1]
            labels[item, 3] = path[-1]
    return labels


def read_item_text(path, num_items=None, attributes_path=None, names_path=None):
    """Reads item text and facet labels for items `1..num_items`.

    Args:
        path: a `*_item_text.jsonl` file: one JSON object per item with
            `item_id` and at least one of `title`, `idgenrec_text`, `text`;
            optional `s3rec_attribute_ids` and `attributes` (their names).
        num_items: expected number of items (e.g. `SequenceData.num_items`);
            default: the largest `item_id`. Every id `1..num_items` must
            have exactly one row.
        attributes_path: optional S3-Rec `*_item2attributes.json`; when
            given, its attribute ids are used (and must agree with the
            JSON-lines file's `s3rec_attribute_ids` where that has them).
        names_path: optional `*_item2attributes_names.json` (id -> name;
            null for placeholders), used for names the JSON-lines file lacks.

    Returns:
        `ItemText`.

    Raises:
        DataFormatError: with `file:line: reason` for a blank or malformed
            row, a non-integer, non-positive, repeated or out-of-range item
            id, a missing item, attribute lists that disagree, or an item
            with neither text nor attributes.
    """
    path = os.fspath(path)
    rows = _read_jsonl(path)
    largest = max(rows)
    num_items = largest if num_items is None else int(num_items)
    if largest > num_items:
        line = rows[largest][0]
        raise DataFormatError(path, line, f"item_id {largest} is beyond num_items={num_items}")
    missing = [i for i in range(1, num_items + 1) if i not in rows]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise DataFormatError(path, None, f"{len(missing)} item ids of 1..{num_items} have no row: {shown}")

    file_attributes = _read_attributes(attributes_path) if attributes_path is not None else {}
    names = _read_names(names_path) if names_path is not None else {}
    attribute_lists = [[] for _ in range(num_items + 1)]
    for item, (line, row) in rows.items():
        ids = row.get("s3rec_attribute_ids")
        if item in file_attributes:
            if ids is not None and list(ids) != file_attributes[item]:
                raise DataFormatError(
                    path, line, f"s3rec_attribute_ids {ids} disagree with {attributes_path} ({file_attributes[item]})"
                )
            ids = file_attributes[item]
        ids = list(ids or [])
        attribute_lists[item] = ids
        for a, name in zip(ids, row.get("attributes") or []):
            names.setdefault(a, _clean(name))
    labels = _facet_labels(attribute_lists, names)

    texts, attribute_only = [""], []
    for item in range(1, num_items + 1):
        line, row = rows[item]
        title = next((row[k].strip() for k in ("title", "idgenrec_text", "text") if (row.get(k) or "").strip()), "")
        brand = names.get(int(labels[item, 0])) if labels[item, 0] >= 0 else None
        path_names = [names.get(int(a)) for a in labels[item, 1:3] if a >= 0]
        leaf = names.get(int(labels[item, 3])) if labels[item, 3] >= 0 else None
        if leaf and (not path_names or path_names[-1] != leaf):
            path_names.append(leaf)
        path_names = [n for n in path_names if n]
        text = item_text_string(title, brand, path_names)
        if not text:
            raise DataFormatError(path, line, f"item {item} has no title, phrase, text or named attribute")
        if not title:
            attribute_only.append(item)
        texts.append(text)
    label_names = {a: n for a, n in names.items() if n is not None}
    return ItemText(texts, labels, label_names, num_items, tuple(attribute_only), path)
