import json
import os

import numpy as np
import pytest

from keras_fame.data.registry import ITEM_TEXT_FILES
from keras_fame.data import DataFormatError
from keras_fame.data.item_text import FACETS, facets_for_heads, item_text_string, read_item_text

# Toys-like rows: a brand slot first (1 = placeholder), null-named top levels (2, 9) separate paths.
TOYS_NAMES = {1: None, 2: None, 3: "LEGO", 4: "Building Toys", 5: "Building Sets", 6: "Mattel",
              7: "Dolls", 8: "Fashion Dolls", 9: None, 10: "Kids &amp; Family"}
TOYS_ROWS = [
    {"item_id": 1, "idgenrec_text": "star wars x-wing", "s3rec_attribute_ids": [3, 2, 4, 5]},
    {"item_id": 2, "idgenrec_text": "barbie dream house", "s3rec_attribute_ids": [6, 2, 7, 8, 9, 10]},
    {"item_id": 3, "idgenrec_text": "wooden blocks", "s3rec_attribute_ids": [1, 2, 4]},
    {"item_id": 4, "idgenrec_text": "", "s3rec_attribute_ids": [3, 2, 4, 5]},
]


def _write_jsonl(tmp_path, rows, names=None, name="items.jsonl"):
    path = tmp_path / name
    lines = []
    for row in rows:
        row = dict(row)
        if names is not None and "s3rec_attribute_ids" in row:
            row["attributes"] = [names[a] for a in row["s3rec_attribute_ids"]]
        lines.append(json.dumps(row) if isinstance(row, dict) else row)
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_template_and_facets_on_toys_like_rows(tmp_path):
    text = read_item_text(_write_jsonl(tmp_path, TOYS_ROWS, TOYS_NAMES))
    assert text.num_items == 4 and text.texts[0] == ""
    assert text.texts[1] == "star wars x-wing. Brand: LEGO. Category: Building Toys > Building Sets"
    # The second path (after the null-named top level 9) is not part of the facets; entities decoded.
    assert text.texts[2] == "barbie dream house. Brand: Mattel. Category: Dolls > Fashion Dolls"
    # Brand placeholder (id 1) -> no brand label and no "Brand:" in the text.
    assert text.texts[3] == "wooden blocks. Category: Building Toys"
    assert text.facet_labels[3].tolist() == [-1, 4, -1, 4]
    assert text.facet_labels[1].tolist() == [3, 4, 5, 5]
    assert text.facet_labels[0].tolist() == [-1] * len(FACETS)
    # No title and no phrase: attribute-only text, reported.
    assert text.texts[4] == "Brand: LEGO. Category: Building Toys > Building Sets"
    assert text.attribute_only == (4,)
    assert text.label_names[10] == "Kids & Family"


def test_beauty_like_brand_rule_and_placeholder_brand(tmp_path):
    # Beauty lists the brand first only when there is one; a category id that starts an item
    # also occurs later elsewhere, so it is not taken for a brand. "Unknown" is a placeholder.
    names = {11: "OPI", 12: "Makeup", 13: "Nails", 14: "Nail Polish", 15: "Unknown"}
    rows = [
        {"item_id": 1, "title": "OPI Nail Lacquer", "s3rec_attribute_ids": [11, 12, 13, 14]},
        {"item_id": 2, "title": "Top coat", "s3rec_attribute_ids": [12, 13, 14]},
        {"item_id": 3, "title": "BB cream", "s3rec_attribute_ids": [15, 12, 13]},
        {"item_id": 4, "title": "Two paths", "s3rec_attribute_ids": [11, 12, 13, 12, 14]},
    ]
    text = read_item_text(_write_jsonl(tmp_path, rows, names))
    assert text.facet_labels[1].tolist() == [11, 12, 13, 14]
    assert text.facet_labels[2].tolist() == [-1, 12, 13, 14]
    assert text.facet_labels[3].tolist() == [-1, 12, 13, 13]
    assert "Unknown" not in text.texts[3]
    assert text.facet_labels[4].tolist() == [11, 12, 13, 13]  # a repeated level-1 id opens a second path


def test_head_labels_follow_facets_for_heads(tmp_path):
    text = read_item_text(_write_jsonl(tmp_path, TOYS_ROWS, TOYS_NAMES))
    assert facets_for_heads(1) == ("category_leaf",)
    assert facets_for_heads(4) == FACETS
    assert facets_for_heads(6) == FACETS + FACETS[:2]
    np.testing.assert_array_equal(text.head_labels(2), text.facet_labels[:, [0, 3]])
    with pytest.raises(ValueError):
        facets_for_heads(0)


def test_item_text_string():
    assert item_text_string("a.", "B", ["c", "d"]) == "a. Brand: B. Category: c > d"
    assert item_text_string("a", None, []) == "a"


def test_attribute_files_are_used_and_checked(tmp_path):
    rows = [{"item_id": r["item_id"], "idgenrec_text": r["idgenrec_text"] or "x"} for r in TOYS_ROWS]
    attributes = {str(r["item_id"]): r["s3rec_attribute_ids"] for r in TOYS_ROWS}
    (tmp_path / "attrs.json").write_text(json.dumps(attributes))
    (tmp_path / "names.json").write_text(json.dumps({str(k): v for k, v in TOYS_NAMES.items()}))
    text = read_item_text(_write_jsonl(tmp_path, rows), attributes_path=tmp_path / "attrs.json", names_path=tmp_path / "names.json")
    assert text.facet_labels[1].tolist() == [3, 4, 5, 5]
    # The JSON-lines ids must agree with the attribute file where both exist.
    bad = [dict(rows[0], s3rec_attribute_ids=[6, 2, 7])] + rows[1:]
    with pytest.raises(DataFormatError, match=r"items\.jsonl:1: .*disagree"):
        read_item_text(_write_jsonl(tmp_path, bad), attributes_path=tmp_path / "attrs.json")


@pytest.mark.parametrize(
    "lines, num_items, line, reason",
    [
        (['{"item_id": 1, "title": "a"}', "", '{"item_id": 2, "title": "b"}'], None, 2, "blank line"),
        (['{"item_id": 1, "title": "a"}', '{"item_id": 2, "title": '], None, 2, "not valid JSON"),
        (['{"item_id": 1, "title": "a"}', "[1, 2]"], None, 2, "expected a JSON object"),
        (['{"item_id": 1, "title": "a"}', '{"item_id": "2", "title": "b"}'], None, 2, "must be an integer"),
        (['{"item_id": 1, "title": "a"}', '{"item_id": 0, "title": "b"}'], None, 2, "not positive"),
        (['{"item_id": 1, "title": "a"}', '{"item_id": 1, "title": "b"}'], None, 2, "repeats line 1"),
        (['{"item_id": 1, "title": "a"}', '{"item_id": 3, "title": "b"}'], 2, 2, "beyond num_items=2"),
        (['{"item_id": 1, "title": 5}'], None, 1, "title must be a string"),
        (['{"item_id": 1, "title": "a", "s3rec_attribute_ids": [0]}'], None, 1, "positive integers"),
        (['{"item_id": 1, "title": "a", "s3rec_attribute_ids": [3], "attributes": ["x", "y"]}'], None, 1, "2 attribute names for 1"),
        (['{"item_id": 1, "title": ""}'], None, 1, "no title, phrase, text or named attribute"),
    ],
)
def test_bad_rows_name_file_line_and_reason(tmp_path, lines, num_items, line, reason):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as err:
        read_item_text(path, num_items=num_items)
    assert f"bad.jsonl:{line}: " in str(err.value) and reason in str(err.value)


def test_missing_items_and_empty_file(tmp_path):
    path = tmp_path / "gap.jsonl"
    path.write_text('{"item_id": 1, "title": "a"}\n{"item_id": 3, "title": "c"}\n')
    with pytest.raises(DataFormatError, match="1 item ids of 1..3 have no row: 2"):
        read_item_text(path)
    with pytest.raises(DataFormatError, match="have no row"):
        read_item_text(tmp_path / "gap.jsonl", num_items=5)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataFormatError, match="no items"):
        read_item_text(tmp_path / "empty.jsonl")


@pytest.mark.parametrize(
    "dataset, num_items, brand, leaf",
    # Measured on shared/data (2026-12-02): labelled fraction of brand and leaf category.
    [("toys", 11924, 0.797, 0.971), ("beauty", 12101, 0.614, 1.0)],
)
def test_real_item_text_and_facets(dataset, num_items, brand, leaf, real_data):
    sequences = real_data(dataset)  # skips, or fails under CI=true
    text = read_item_text(os.path.join(os.path.dirname(sequences), ITEM_TEXT_FILES[dataset]), num_items=num_items)
    coverage = text.coverage()
    assert coverage["brand"]["labelled"] == pytest.approx(brand, abs=0.001)
    assert coverage["category_leaf"]["labelled"] == pytest.approx(leaf, abs=0.001)
    assert all(t for t in text.texts[1:]) and text.attribute_only == ()
    if dataset == "toys":
        # Placeholders 1, 2, 231, 479 are never labels; item 1 is Bandai > Dolls & Accessories > Dolls.
        assert not np.isin(text.facet_labels, [1, 2, 231, 479]).any()
        assert text.texts[1] == "pocoyo and friends swiggle. Brand: Bandai. Category: Dolls & Accessories > Dolls"
    else:
        assert text.texts[1].startswith("OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce. Brand: OPI.")
        assert text.label_names[int(text.facet_labels[1, 3])] == "Nail Polish"
