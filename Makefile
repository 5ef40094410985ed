# Course commands. See README.md.
#   make book       build the site into _build/html (creates .venv on first use)
#   make test       lint, library tests, strict nbval of the notebooks, book build with -W
#   make notebooks  re-execute every notebook in place (refreshes the committed outputs)
#   make test-gpu   lax nbval of every notebook with CUDA required; runs in an existing
#                   environment too: make test-gpu PYTHON=python3
#   make exercises  self-test the exercise solutions, build the student bundle (_build/exercises)
#   make bench      run benchmarks/, write results to benchmarks/results/
#   make bench-gpu  the attention benchmark on a CUDA device, in bfloat16 and float16
#                   (existing environment too: make bench-gpu PYTHON=python3)
#   make figures    redraw the book's diagrams (diagrams/*.py -> book/figures/*.svg)
#   make explorers  recompute the interactive figures' data (explorers/*.py -> book/explorers)
#   make pdf        the whole book as one PDF, offline (_build/html/attention-course.pdf)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

BASE_PYTHON ?= python3
VENV        := .venv
PYTHON      ?= $(VENV)/bin/python
STAMP       := $(VENV)/.installed
JOBS        ?= 2
# Each of the JOBS notebook or test workers gets its share of the cores: more threads than
# cores make torch's parallel regions wait on each other, and the chapters' timings with them
# (the library tests took 171 s with torch's default threads, 142 s with one per worker).
NB_THREADS  ?= $(shell n=$$(( $$(nproc) / $(JOBS) )); echo $$(( n > 0 ? n : 1 )))
# The environment is only built when we use our own .venv; PYTHON=... uses what exists.
ENV_DEP     := $(if $(filter $(VENV)/bin/python,$(PYTHON)),$(STAMP),)
TORCH_PIN   := $(shell grep -E '^torch==' requirements.txt)
D2L_PIN     := d2l==1.0.3
NOTEBOOKS   := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
NBVAL_FLAGS := --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider
BOOK_FLAGS  := -W -n --keep-going
JB          := $(PYTHON) -c "import sys; from jupyter_book.cli.main import main; sys.argv[0] = 'jupyter-book'; sys.exit(main())"

.PHONY: help install lint book book-strict test test-lib test-notebooks test-site test-colab test-gpu notebooks exercises bench bench-gpu figures explorers pdf clean

help:
	@sed -n '2,13p' Makefile | sed 's/^# *//'

install: $(STAMP)

# torch goes first and on its own: any other spec pulls GBs of CUDA wheels. pip byte-compiles
# file by file; compileall does it on every core, in under half the time. The .pyc files
# matter: the grader's sandbox mounts the environment and the course's packages read-only,
# and without them every graded notebook compiles torch again (grading the test fixtures
# took 119 s instead of 57 s). The one file left out only parses on Python 3.12 (pip skips
# it too).
PIP_INSTALL := $(VENV)/bin/python -m pip install -q --no-compile
$(STAMP): requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || $(BASE_PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(PIP_INSTALL) "$(TORCH_PIN)"
	$(PIP_INSTALL) -r requirements.txt
	$(PIP_INSTALL) --no-deps "$(D2L_PIN)"
	$(PIP_INSTALL) --no-deps -e .
	$(VENV)/bin/python -m compileall -q -j 0 -x 'torch/testing/_internal/py312_intrinsics' \
	  $(VENV)/lib attention_lib attention_course
	$(VENV)/bin/python -c "import torch, attention_lib; attention_lib.import_d2l(); print('torch', torch.__version__, '| attention_lib', attention_lib.__version__, '| d2l ok')"
	touch $@

# The diagrams: one script per chapter in diagrams/, one visual language (diagrams/style.py).
figures: $(ENV_DEP)
	$(PYTHON) -m diagrams

# The explorers' data: one script per interactive figure in explorers/, from real runs.
explorers: $(ENV_DEP)
	$(PYTHON) -m explorers

book: $(ENV_DEP)
	$(JB) build . --builder html
	@echo "Site built: open $(CURDIR)/_build/html/index.html"

# The same build with warnings as errors and nitpicky cross-references, from scratch.
book-strict: $(ENV_DEP)
	rm -rf _build/html _build/.doctrees
	$(JB) build . --builder html $(BOOK_FLAGS)

# The whole book as one PDF: Chromium prints the one-page build (book/make_pdf.py). It is
# written into the site, which links it from the landing page: run after book or book-strict.
pdf: $(ENV_DEP)
	rm -rf _build/singlehtml
	$(JB) build . --builder singlehtml
	$(PYTHON) book/make_pdf.py

# pyflakes, bugbear and import order over the packages, tests and benchmarks (pyproject.toml)
lint: $(ENV_DEP)
	$(PYTHON) -m ruff check .

test-lib: $(ENV_DEP)
	OMP_NUM_THREADS=$(NB_THREADS) $(PYTHON) -m pytest tests -n $(JOBS) -q --ignore=tests/site --ignore=tests/colab

# Progress bars are for a person running a notebook; executed for the book they are off.
test-notebooks: $(ENV_DEP)
	TQDM_DISABLE=1 OMP_NUM_THREADS=$(NB_THREADS) $(PYTHON) -m pytest $(NBVAL_FLAGS) -n $(JOBS) --dist loadfile -q $(NOTEBOOKS)

# Browser tests of the built site and the PDF, in JOBS workers; skipped, with the reason,
# when chromium is missing.
test-site: $(ENV_DEP)
	$(PYTHON) -m pytest tests/site -n $(JOBS) -q -rs

# The Colab path: a fresh environment with only Colab's preinstalls runs a chapter whose setup
# cell installs attention_lib from the repository URL in _config.yml (served from this checkout).
test-colab: $(ENV_DEP)
	$(PYTHON) -m pytest tests/colab -q -s

test: lint test-lib test-notebooks book-strict pdf test-site
	@echo "make test: all green"

notebooks: $(ENV_DEP)
	for nb in $(NOTEBOOKS); do \
	  echo "== $$nb"; start=$$(date +%s); \
	  TQDM_DISABLE=1 $(PYTHON) -m jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=600 "$$nb"; \
	  echo "   $$(( $$(date +%s) - start )) s"; \
	done

test-gpu:
	$(PYTHON) -c "import torch, sys; ok = torch.cuda.is_available(); print('CUDA available:', ok); sys.exit(0 if ok else 'make test-gpu needs a CUDA device')"
	ATTENTION_DEVICE=cuda $(PYTHON) -m pytest tests -q -x --ignore=tests/site --ignore=tests/colab
	ATTENTION_DEVICE=cuda $(PYTHON) -m pytest --nbval-lax -p no:cacheprovider -q $(NOTEBOOKS)

# Solutions pass every check; the bundle students get holds no solution or hidden check.
exercises: $(ENV_DEP)
	$(PYTHON) -m attention_course.grading selftest
	$(PYTHON) -m attention_course.grading bundle _build/exercises

bench: $(ENV_DEP)
	@ls benchmarks/*.py >/dev/null 2>&1 || { echo "no benchmarks yet"; exit 0; }; \
	for b in benchmarks/*.py; do echo "== $$b"; $(PYTHON) "$$b"; done

bench-gpu:
	$(PYTHON) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'make bench-gpu needs a CUDA device')"
	for dtype in bfloat16 float16; do \
	  $(PYTHON) benchmarks/efficient.py --device cuda --dtype $$dtype --with-16k; done

clean:
	rm -rf _build .pytest_cache .hypothesis
