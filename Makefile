# Quick start: `make run` (index + query demo on embedded Chroma) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export VENV

.PHONY: run test bench setup setup-test clean

setup:
	@scripts/bootstrap.sh

# also builds llama-cpp-python[server] once per machine (wheel cached) for the remote-server tests
setup-test:
	@scripts/bootstrap.sh --test

run: setup
	$(PY) -m mm_rag_components.cli demo $(ARGS)

test: setup-test
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/ingest.py --out benchmarks/results/ingest.json
	$(PY) benchmarks/rerank_pointwise.py --out benchmarks/results/rerank_pointwise.json

clean:
	rm -rf .mm-rag .pytest_cache
