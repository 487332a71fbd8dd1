"""`examples/quickstart.py`, the public API end to end, runs and says what it should."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.large
def test_quickstart_trains_ranks_saves_and_exports(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "quickstart.py"), "--epochs", "2", "--export-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "FAME    test NDCG@10 0." in proc.stdout and "gate over heads: [[0." in proc.stdout
    assert (tmp_path / "1" / "saved_model.pb").is_file()
