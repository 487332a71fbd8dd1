"""`benchmarks/paper_figures.py quick`: the paper's Fig. 5-7 machinery end to end on synthetic data."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.large
def test_quick_mode_writes_the_figures_and_their_tables(tmp_path):
    image = pytest.importorskip("matplotlib.image")
    out = tmp_path / "paper"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "paper_figures.py"), "quick", "--out", str(out)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for name in ("fig5_heads.png", "fig6_experts.png", "fig7_case_study.png"):
        pixels = image.imread(out / name)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 600, name
        # Not a blank canvas: plenty of pixels differ from the background.
        assert np.mean(np.any(pixels[..., :3] < 0.9, axis=-1)) > 0.01, name
    table = (out / "paper_figures.md").read_text()
    for h in (1, 2, 4, 8, 16):
        assert f"\n| {h} | 1 | 0." in table  # one row per head count, with a measured metric
    for n in (2, 4, 8, 16, 32):
        assert f"\n| {n} | 1 | 0." in table
    alignment = json.loads((out / "facet_alignment.json").read_text())
    assert alignment["alignment"] and "paper_figures.py" in alignment["command"] and "commit" in alignment["git"]
    case = (out / "case_study.md").read_text()
    assert "Gate weights over heads: head 0:" in case and "| colour |" in case and "| shape |" in case
