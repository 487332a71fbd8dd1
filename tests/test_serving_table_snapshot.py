"""benchmarks/serving_table_snapshot.py on a small catalogue: three ranking functions, one answer, a result file."""

import json

import keras
import pytest

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="times the TensorFlow serving path")


def test_the_snapshot_serves_the_same_top_k_and_the_file_records_its_provenance(tmp_path, load_script):
    bench = load_script("benchmarks/serving_table_snapshot.py")
    out = tmp_path / "snapshot.json"
    rows, same = bench.main(["--items", "3000", "--facets", "50", "20", "--chunk-size", "1024", "--batch", "2",
                             "--warmup", "1", "--rounds", "2", "--out", str(out)])
    assert same
    assert set(rows) == {"plain", "facets, table per request", "facets, snapshot"}
    report = json.loads(out.read_text())
    assert report["top_k_equal"] and report["settings"]["items"] == 3000
    assert {"command", "git", "machine", "packages"} <= set(report)
