"""The experiment harness: the paper's staged pipeline, its command line, and reporting.

Not part of the library API. `keras_fame` itself (layers, models, losses,
evaluation, export, data, pre-training, `keras_fame.training`) never imports
this subpackage (a test checks it); the harness, the `keras-fame` command,
the examples and `benchmarks/` sit on top of the library through it.

- `config`: `PipelineConfig`, the one set of defaults; `text_start`: `TextStart`
  and the item table from text; `pipeline`: `run_pipeline` (text start -> SASRec
  -> transplant -> FAME -> test, resumable), one function per stage.
- `cli`: the training command line (`examples/train_*.py`, `keras-fame train`).
- `reporting`: the paper's Table 2 row, result tables, JSON files, the machine.

The multi-seed runner and the paper's figures are scripts in `benchmarks/`
(`multi_seed.py`, `paper_figures.py`) on top of `run_pipeline`.
"""

from keras_fame.experiments.config import PipelineConfig
from keras_fame.experiments.pipeline import run_pipeline
from keras_fame.experiments.text_start import TextStart, text_item_table
from keras_fame.experiments.reporting import (
    PAPER_FAME,
    format_comparison,
    machine_description,
    provenance,
    write_json_atomic,
)
