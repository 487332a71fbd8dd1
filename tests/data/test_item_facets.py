"""Item facets from S3-Rec attribute files, and `--item-facets` end to end, on files the tests write."""

import json

import numpy as np
import pytest

from keras_fame import console
from keras_fame.data import DataFormatError, parse_facet_names, read_item_facets, read_sequences, write_sequences
from keras_fame.data.item_facets import attribute_file_beside, item_facets_from_labels
from keras_fame.data.synthetic import planted_facets

# Brand first (ids 10, 11; item 3 has none), then a category path (20 > 21 or 20 > 22; item 4: 30 alone).
ATTRIBUTES = {"1": [10, 20, 21], "2": [11, 20, 22], "3": [20, 21], "4": [10, 30]}
NAMES = {"10": "Acme", "11": "Zeta", "20": "Toys", "21": "Cars", "22": "Dolls", "30": "Games"}


def _write(folder, attributes=ATTRIBUTES, names=NAMES, stem="shop"):
    (folder / f"{stem}_item2attributes.json").write_text(json.dumps(attributes))
    if names is not None:
        (folder / f"{stem}_item2attributes_names.json").write_text(json.dumps(names))
    return folder / f"{stem}_item2attributes.json"


def test_brand_and_leaf_labels_from_the_attribute_file(tmp_path):
    facets = read_item_facets(_write(tmp_path), num_items=5, facets="brand,level1,leaf")
    assert facets.names == ("brand", "category_level_1", "category_leaf")
    brand, level1, leaf = facets.labels
    # Labels are 1..C in attribute-id order, 0 = none; item 5 is not in the file, row 0 is padding.
    assert brand.tolist() == [0, 1, 2, 0, 1, 0]
    assert facets.vocabularies[0].tolist() == [10, 11]
    assert level1.tolist() == [0, 1, 1, 1, 2, 0] and facets.vocabularies[1].tolist() == [20, 30]
    assert leaf.tolist() == [0, 1, 2, 1, 3, 0] and facets.vocabularies[2].tolist() == [21, 22, 30]
    assert facets.vocab_sizes == [2, 2, 3]
    assert facets.coverage()["brand"] == {"labelled": 0.6, "distinct": 2}
    # Attributes of items added later map to the same labels; unseen ones to 0.
    new = facets.encode([[11, 30, 22], [99, -1, 21]])
    assert [a.tolist() for a in new] == [[2, 0], [2, 0], [2, 1]]


def test_a_null_name_is_a_placeholder_not_a_label(tmp_path):
    names = {**NAMES, "10": None}  # like Toys' brand-slot placeholder
    facets = read_item_facets(_write(tmp_path, names=names), num_items=4, facets=("brand",))
    assert facets.labels[0].tolist() == [0, 0, 1, 0, 0]


def test_without_a_names_file_every_attribute_is_named(tmp_path):
    facets = read_item_facets(_write(tmp_path, names=None), num_items=4, facets=("brand", "category_leaf"))
    assert facets.labels[0].tolist() == [0, 1, 2, 0, 1]


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected one JSON object"),
        ('{"x": [1]}', "key 'x' is not a positive item id"),
        ('{"1": [1, "a"]}', "attribute ids must be positive integers"),
        ('{"9": [1, 2]}', "item 9 is beyond the 4 items"),
    ],
)
def test_malformed_attribute_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad_item2attributes.json"
    path.write_text(content)
    with pytest.raises(DataFormatError, match=message) as info:
        read_item_facets(path, num_items=4)
    assert str(path) in str(info.value)


def test_missing_files_and_empty_facets_are_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope_item2attributes.json not found"):
        read_item_facets(tmp_path / "nope_item2attributes.json", num_items=3)
    with pytest.raises(FileNotFoundError, match="names.json not found"):
        read_item_facets(_write(tmp_path), num_items=4, names_path=tmp_path / "names.json")
    no_brands = {"1": [20, 21], "2": [21, 20]}  # every first attribute also occurs later: no brands
    with pytest.raises(DataFormatError, match="no item has a label of the facet"):
        read_item_facets(_write(tmp_path, attributes=no_brands, names={}), num_items=2, facets=("brand",))


@pytest.mark.parametrize(
    "spec, heads, expected",
    [
        ("none", 2, ()),
        ("", 2, ()),
        ("auto", 2, ("brand", "category_leaf")),
        ("auto", 1, ("category_leaf",)),
        ("brand, leaf", None, ("brand", "category_leaf")),
        ("level1,category_level_2", None, ("category_level_1", "category_level_2")),
    ],
)
def test_facet_specifications(spec, heads, expected):
    assert parse_facet_names(spec, heads) == expected


@pytest.mark.parametrize("spec, message", [("colour", "unknown item facet 'colour'"), ("brand,brand", "twice")])
def test_bad_facet_specifications(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_facet_names(spec, 2)


def test_item_facets_from_labels_renumbers_each_facet():
    raw = np.array([[-1, -1, -1, -1], [7, 3, -1, 5], [9, 3, -1, 5], [-1, 4, -1, 6]])
    facets = item_facets_from_labels(raw, ("brand", "category_leaf"))
    assert [a.tolist() for a in facets.labels] == [[0, 1, 2, 0], [0, 1, 1, 2]]
    assert attribute_file_beside("/d/Shop.txt") == "/d/Shop_item2attributes.json"


@pytest.mark.large
def test_a_dataset_folder_of_its_own_trains_end_to_end_with_item_facets(tmp_path, capsys):
    """A folder no code knows about: its sequence file and the attribute file beside it are all it takes."""
    data, facts = planted_facets(num_users=120, max_length=10, seed=0)
    seq = tmp_path / "Garden.txt"
    write_sequences(str(seq), data)
    # S3-Rec layout: a brand-like first attribute (the colour), then a one-level path (the shape).
    num_items = read_sequences(str(seq)).num_items
    colours, shapes = facts["item_colour"][: num_items + 1], facts["item_shape"][: num_items + 1]
    attributes = {str(i): [1 + int(colours[i]), 100 + int(shapes[i])] for i in range(1, num_items + 1)}
    (tmp_path / "Garden_item2attributes.json").write_text(json.dumps(attributes))
    out = tmp_path / "run"
    argv = ["train", "garden", "--sequence-file", str(seq), "--output-dir", str(out), "--hidden-dim", "8",
            "--heads", "2", "--experts", "2", "--max-len", "10", "--epochs", "1", "--fame-epochs", "1",
            "--verbose", "0", "--item-facets", "auto", "--facet-loss-weight", "0.5"]
    assert console.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["item_facets"]["names"] == ["brand", "category_leaf"]
    assert results["item_facets"]["vocab_sizes"] == [len(np.unique(colours[1:])), len(np.unique(shapes[1:]))]
    assert results["config"]["facet_loss_weight"] == 0.5 and results["config"]["fame_facet_loss_weight"] == 0.5
    diagnostics = results["fame"]["training"]["head_diagnostics"][0]
    assert len(diagnostics["head_metrics"]) == 2 and 0 <= diagnostics["gate_entropy"] <= np.log(2) + 1e-6

    import keras

    fame = keras.saving.load_model(str(out / "fame.keras"), safe_mode=True)
    assert fame.item_facets[0][1:].tolist() == (colours[1:] - colours[1:].min() + 1).tolist()

    capsys.readouterr()
    (tmp_path / "Garden_item2attributes.json").write_text("{broken")
    assert console.main([*argv, "--fresh"]) == 2
    assert "Garden_item2attributes.json" in capsys.readouterr().err
    (tmp_path / "Garden_item2attributes.json").unlink()
    assert console.main([*argv, "--fresh"]) == 2
    assert "Garden_item2attributes.json not found" in capsys.readouterr().err
