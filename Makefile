# Quick start: `make run` (index + query demo on embedded Chroma) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export VENV
# SERVER_TESTS=0: `make test` neither builds llama.cpp nor runs the tests marked llama_server (CI runs them all)
SERVER_TESTS ?= 1

.PHONY: run test bench setup setup-test clean

setup:
	@scripts/bootstrap.sh

# also builds llama-cpp-python[server] once per machine (wheel cached) for the remote-server tests
setup-test:
	@scripts/bootstrap.sh --test

run: setup
	$(PY) -m mm_rag_components.cli demo $(ARGS)

ifeq ($(SERVER_TESTS),0)
test: setup
	$(PY) -m pytest -m "not llama_server" $(PYTEST_ARGS)
else
test: setup-test
	$(PY) -m pytest $(PYTEST_ARGS)
endif

bench: setup
	$(PY) benchmarks/ingest.py --out benchmarks/results/ingest.json
	$(PY) benchmarks/rerank_pointwise.py --out benchmarks/results/rerank_pointwise.json

clean:
	rm -rf .mm-rag .pytest_cache
