PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# test and benchmark peers are pinned to versions that pass (a new release must not turn CI red)
PINS = -c constraints.txt

.PHONY: torch install install-test test test-fast test-latest explain bench

# torch is pinned to the CPU build that lies on this machine's disk, installed only when missing:
# a bare "torch" would make pip pull a multi-GB CUDA build.
torch:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0

install: torch
	$(PIP) install -e .

install-test: torch
	$(PIP) install $(PINS) -e ".[test]"
	$(PIP) install $(PINS) --no-deps lxt zennit

# the whole suite, peers included (a few minutes on 2 cores); no test may be skipped
test: install-test
	$(PYTHON) -m pytest -q tests

# without the tests marked slow (peer comparisons, multi-process runs, the quick benchmark)
test-fast: install-test
	$(PYTHON) -m pytest -q -m "not slow" tests

# the suite against the newest releases of every peer, in a separate virtual environment
# (.venv-latest), to see the next break before users do; not part of CI
test-latest:
	$(PYTHON) -m venv --system-site-packages .venv-latest
	.venv-latest/bin/python -m pip install -U -e ".[test]" pytest transformers captum hypothesis scikit-learn seqeval
	.venv-latest/bin/python -m pip install -U --no-deps lxt zennit
	.venv-latest/bin/python -m pip list 2>/dev/null | grep -iE "^(torch|transformers|pytest|captum|lxt|hypothesis) "
	.venv-latest/bin/python -m pytest -q tests

explain: install
	bert-lrp explain "a gripping , beautifully acted film that never lets go ."

bench: torch
	$(PIP) install $(PINS) -e ".[bench]"
	$(PYTHON) benchmarks/bench_model.py
