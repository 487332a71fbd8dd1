"""Item facets as model inputs: each item's brand and category labels, from S3-Rec attribute files.

Any S3-Rec dataset folder with `<name>_item2attributes.json` (item id ->
attribute ids, brand first, then the category path) and, optionally,
`<name>_item2attributes_names.json` (attribute id -> name, null for
placeholders) gives the facets of `keras_fame.data.item_text.FACETS` with the
same rules as the item text reader (no per-dataset code):

    facets = read_item_facets("Toys_and_Games_item2attributes.json", num_items=11924,
                              facets=("brand", "category_leaf"))
    model = keras_fame.FAME(11924, heads=2, item_facets=facets.labels)

Labels are renumbered per facet to `1..C_k` (0 = no label), the input the
models take (`SASRec(item_facets=)`, `FAME(item_facets=)`);
`ItemFacets.vocabularies` keeps the attribute id of each label, and
`ItemFacets.encode` maps the attribute lists of items added later to the
same labels.
"""

import dataclasses
import os

import numpy as np

from keras_fame.data.item_text import FACETS, _facet_labels, _read_attributes, _read_names, facets_for_heads
from keras_fame.data.sequences import DataFormatError

# Short names accepted by `parse_facet_names` (and `--item-facets`), besides the full ones in `FACETS`.
FACET_ALIASES = {"brand": "brand", "level1": "category_level_1", "level2": "category_level_2", "leaf": "category_leaf"}


def parse_facet_names(spec, num_heads=None):
    """Facet names from a specification: `"auto"`, `"none"`, or a comma list such as `"brand,leaf"`.

    Args:
        spec: `"auto"` (`facets_for_heads(num_heads)`: one facet per head),
            `"none"` / `""` / None (no facets), or names from `FACETS` or
            their short forms `brand`, `level1`, `level2`, `leaf`, comma
            separated, in head order.
        num_heads: int, needed for `"auto"`.

    Returns:
        A tuple of names from `FACETS` (empty for no facets).

    Raises:
        ValueError: naming the unknown or repeated facet.

    Example:
    >>> parse_facet_names("brand,leaf")
    ('brand', 'category_leaf')
    >>> parse_facet_names("auto", num_heads=2)
    ('brand', 'category_leaf')
    """
    if spec is None or str(spec).strip().lower() in ("", "none"):
        return ()
    spec = str(spec).strip()
    if spec.lower() == "auto":
        if num_heads is None:
            raise ValueError('item facets "auto" take one facet per head: give num_heads')
        return tuple(facets_for_heads(num_heads))
    names = []
    for part in spec.split(","):
        key = part.strip().lower()
        name = FACET_ALIASES.get(key, key)
        if name not in FACETS:
            allowed = ", ".join([*FACET_ALIASES, *FACETS[1:3]])
            raise ValueError(f"unknown item facet {part.strip()!r} in {spec!r}: expected auto, none or a list of {allowed}")
        if name in names:
            raise ValueError(f"item facet {name!r} is listed twice in {spec!r}")
        names.append(name)
    return tuple(names)


@dataclasses.dataclass(frozen=True)
class ItemFacets:
    """Per-item facet labels, ready for `item_facets=`.

    Attributes:
        names: the facet names (from `FACETS`), one per label array.
        labels: list of int32 arrays `[num_items + 1]`; label `c` in
            `1..C_k` stands for attribute `vocabularies[k][c - 1]`, 0 = none.
        vocabularies: list of int64 arrays, the attribute ids of each
            facet's labels (sorted).
        num_items: the largest item id.
        source: the file the facets were read from.
    """

    names: tuple
    labels: list
    vocabularies: list
    num_items: int
    source: str = "<memory>"

    @property
    def vocab_sizes(self):
        """`[C_1, ..., C_K]`: how many labels each facet has."""
        return [len(v) for v in self.vocabularies]

    def coverage(self):
        """Per facet: the fraction of items `1..num_items` with a label, and the number of labels."""
        return {
            name: {"labelled": float(np.mean(labels[1:] > 0)) if len(labels) > 1 else 0.0, "distinct": len(vocab)}
            for name, labels, vocab in zip(self.names, self.labels, self.vocabularies)
        }

    def encode(self, raw_labels):
        """Maps attribute ids to this object's labels: `raw_labels` int `[items, K]` (-1 = none) -> K arrays `[items]`.

        An attribute the vocabulary does not hold (e.g. a new brand of an
        item added later) gets label 0, no label.
        """
        raw_labels = np.asarray(raw_labels, dtype=np.int64).reshape(-1, len(self.names))
        out = []
        for k, vocab in enumerate(self.vocabularies):
            column = raw_labels[:, k]
            position = np.searchsorted(vocab, column)
            found = (position < len(vocab)) & (vocab[np.minimum(position, len(vocab) - 1)] == column) & (column >= 0)
            out.append(np.where(found, position + 1, 0).astype(np.int32))
        return out

    def summary(self):
        """A JSON-ready description (for `results.json`)."""
        return {"source": self.source, "names": list(self.names), "vocab_sizes": self.vocab_sizes,
                "coverage": self.coverage()}


def item_facets_from_labels(raw_labels, facets, source="<memory>"):
    """`ItemFacets` from a raw label matrix `[num_items + 1, len(FACETS)]` (attribute ids, -1 = none).

    `raw_labels` is `ItemText.facet_labels` or what `read_item_facets`
    derives from the attribute file; `facets` names the columns to keep, in
    order.
    """
    raw_labels = np.asarray(raw_labels, dtype=np.int64)
    labels, vocabularies = [], []
    for name in facets:
        column = raw_labels[:, FACETS.index(name)].copy()
        column[0] = -1
        vocab = np.unique(column[column >= 0])
        encoded = np.zeros(len(column), np.int32)
        encoded[column >= 0] = np.searchsorted(vocab, column[column >= 0]) + 1
        labels.append(encoded)
        vocabularies.append(vocab)
    return ItemFacets(tuple(facets), labels, vocabularies, len(raw_labels) - 1, source)


def read_item_facets(attributes_path, num_items, facets=("brand", "category_leaf"), names_path=None):
    """Reads the facets of items `1..num_items` from an S3-Rec `*_item2attributes.json`.

    Args:
        attributes_path: the `<name>_item2attributes.json` file (one JSON
            object: item id -> list of attribute ids, brand first).
        num_items: the catalogue size (e.g. `SequenceData.num_items`); items
            the file does not list get no labels.
        facets: names from `FACETS` (or a specification for
            `parse_facet_names` such as `"brand,leaf"`). Defaults to brand
            and leaf category.
        names_path: optional `<name>_item2attributes_names.json`; a null
            name marks a placeholder (no label, or a path separator), as
            for the item text (`keras_fame.data.item_text`). Default: the
            file of that name beside `attributes_path`, when it exists.

    Returns:
        `ItemFacets`.

    Raises:
        FileNotFoundError: naming the missing file.
        DataFormatError: naming the file (and the entry) that is not valid
            JSON, not an object of attribute lists, or lists an item beyond
            `num_items`; or when no item has a label of a requested facet.
    """
    attributes_path = os.fspath(attributes_path)
    if isinstance(facets, str):
        facets = parse_facet_names(facets)
    facets = tuple(facets)
    if not facets:
        raise ValueError("facets is empty: name at least one of " + ", ".join(FACETS))
    if not os.path.isfile(attributes_path):
        raise FileNotFoundError(f"item attribute file {attributes_path} not found")
    if names_path is None:
        beside = attributes_path.removesuffix(".json") + "_names.json"
        names_path = beside if os.path.isfile(beside) else None
    elif not os.path.isfile(names_path):
        raise FileNotFoundError(f"attribute names file {names_path} not found")
    attributes = _read_attributes(attributes_path)
    beyond = [item for item in attributes if item > int(num_items)]
    if beyond:
        raise DataFormatError(attributes_path, None, f"item {max(beyond)} is beyond the {num_items} items of the sequences")
    names = _read_names(names_path) if names_path else {}
    lists = [attributes.get(item, []) for item in range(int(num_items) + 1)]
    result = item_facets_from_labels(_facet_labels(lists, names), facets, source=os.path.abspath(attributes_path))
    empty = [name for name, vocab in zip(result.names, result.vocabularies) if len(vocab) == 0]
    if empty:
        raise DataFormatError(attributes_path, None, f"no item has a label of the facet(s) {', '.join(empty)}")
    return result


def attribute_file_beside(sequence_file):
    """The S3-Rec attribute file that goes with a sequence file: `<dir>/<stem>_item2attributes.json`."""
    stem, _ = os.path.splitext(os.fspath(sequence_file))
    return f"{stem}_item2attributes.json"
