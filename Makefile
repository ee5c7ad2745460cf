PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: torch install install-test test test-fast explain bench

# torch is pinned to the CPU build that lies on this machine's disk, installed only when missing:
# a bare "torch" would make pip pull a multi-GB CUDA build.
torch:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0

install: torch
	$(PIP) install -e .

install-test: torch
	$(PIP) install -e ".[test]"
	$(PIP) install --no-deps lxt

# the whole suite, peers included (about 2 minutes on 2 cores)
test: install-test
	$(PYTHON) -m pytest -q tests

# without the tests marked slow (peer comparisons, multi-process runs, the quick benchmark)
test-fast: install-test
	$(PYTHON) -m pytest -q -m "not slow" tests

explain: install
	bert-lrp explain "a gripping , beautifully acted film that never lets go ."

bench: torch
	$(PIP) install -e ".[bench]"
	$(PYTHON) benchmarks/bench_model.py
