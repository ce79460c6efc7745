# The two commands: `make run` (the main job end to end on the local defaults) and `make test`.
# Both install what they need into a venv cached outside the clone (MMGRAPH_CACHE, default
# ~/.cache/mmgraph), so repeated runs are fast and a fresh machine needs nothing by hand.

PYTHON ?= python3
CACHE ?= $(or $(MMGRAPH_CACHE),$(HOME)/.cache/mmgraph)
VENV ?= $(CACHE)/venv
UV := $(CACHE)/uv-tool/bin/uv
export UV_CACHE_DIR ?= $(CACHE)/uv
export MMGRAPH_CACHE := $(CACHE)
MMGRAPH := $(VENV)/bin/mmgraph

.PHONY: venv run test lint bench

$(UV):
	$(PYTHON) -m venv $(CACHE)/uv-tool
	$(CACHE)/uv-tool/bin/pip install --quiet uv

# Packages are installed with their bytecode: uv leaves it out by default, and where
# PYTHONDONTWRITEBYTECODE is set Python never caches it, so every process (each CLI call, each
# subprocess and rank the tests start) compiled torch, PyG and the rest from source, about 5 s
# apiece. uv compiles only what it installs, so a venv made before gets one full pass (marked by
# .bytecode); the few files written for a newer Python than the venv's are left as source.
venv: $(UV)
	test -x $(VENV)/bin/python || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	$(UV) pip install --quiet --compile-bytecode --python $(VENV)/bin/python -e ".[dev]"
	test -f $(VENV)/.bytecode || { $(VENV)/bin/python -m compileall -qq -j 0 $(VENV)/lib; \
		touch $(VENV)/.bytecode; }
	$(VENV)/bin/python -m mmgraph.service.rpc.codegen

# The main job end to end: start the local Neo4j (unless NEO4J_URI names a server), fetch and
# ingest the emoji graph with the text and image encoders, train HGT (bounded by TRAIN_SECONDS),
# promote it (embeddings back to Neo4j with a vector index), serve it over gRPC on loopback and
# print the answers of example queries, then stop everything it started.
TRAIN_SECONDS ?= 240
run: venv
	@if [ -z "$$NEO4J_URI" ] && ! $(MMGRAPH) neo4j status --json | grep -q '"running": true'; then \
		trap '$(MMGRAPH) neo4j stop' EXIT; trap 'exit 130' INT TERM; \
		$(MMGRAPH) neo4j start || exit 1; \
	fi; \
	$(MMGRAPH) datasets fetch emoji && $(MMGRAPH) ingest --dataset emoji; status=$$?; \
	[ $$status -le 0 ] || exit $$status; \
	$(MMGRAPH) stats && \
	$(MMGRAPH) train --model hgt --max-seconds $(TRAIN_SECONDS) --promote && \
	$(MMGRAPH) demo

test: venv lint
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

bench: venv
	$(VENV)/bin/python bench/ingest.py
	$(VENV)/bin/python bench/encoders.py
