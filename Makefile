# Quick start: `make demo` (local demo, two tenants, offline) and `make test` (unit + integration).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= ragapi,webapp,local,otel,dev

.PHONY: demo test unit integration install deps lint format bench eval clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed ## Python packages into .venv

deps: install ## also system packages and DynamoDB Local (needs root or sudo for apt)
	scripts/system-deps.sh

demo: install ## ingest both demo tenants and start their APIs and web chats (Ctrl-C stops); TENANTS=x DOCS=dir for yours
	$(PY) -m devstack $(if $(TENANTS),--tenants $(TENANTS)) $(if $(DOCS),--documents $(DOCS))

test: deps lint ## everything CI runs: lint, unit tests, integration tests
	$(PY) -m pytest tests/unit tests/integration

unit: install
	$(PY) -m pytest tests/unit

integration: deps
	$(PY) -m pytest tests/integration

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

eval: install ## retrieval, conversation and no-answer quality on the dev sets (after `make demo` built the indexes)
	for t in tenanta tenantb; do EMBEDDINGS_PROVIDER=local HF_HUB_OFFLINE=1 $(PY) -m rag.eval --tenant $$t \
	  --index-uri .demo/$$t/index --questions ../shared/eval/dev_$$t.jsonl \
	  --conversations ../shared/eval/dev_conversations_$$t.jsonl \
	  --unanswerable ../shared/eval/dev_unanswerable_$$t.jsonl; done

bench: install
	$(PY) benchmarks/ingest_bench.py
	$(PY) benchmarks/api_bench.py
	$(PY) benchmarks/vector_bench.py --sizes 100000

clean:
	rm -rf .demo test-artifacts .pytest_cache .ruff_cache
