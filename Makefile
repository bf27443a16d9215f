# Quick start: `make run` (index + query demo on embedded Chroma) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export VENV

.PHONY: run test bench setup clean

setup:
	@scripts/bootstrap.sh

run: setup
	$(PY) -m mm_rag_components.cli demo $(ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/ingest.py --out benchmarks/results/ingest.json
	$(PY) benchmarks/rerank_pointwise.py --out benchmarks/results/rerank_pointwise.json

clean:
	rm -rf .mm-rag .pytest_cache
