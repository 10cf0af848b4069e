# Tickwire: the two commands a user needs are `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROTO_FILES := $(shell find protos -name '*.proto' | sort)
PROTO_STAMP := server/tickwire/.stamp-proto
HOST ?= 127.0.0.1
PORT ?= 50051
TARGET ?=

.PHONY: help setup proto lint format test demo demo-pricing demo-stream serve calibrate bench clean

help:
	@echo "make demo            set up, start the server on 127.0.0.1, run the risk demo on real prices, stop"
	@echo "make demo TARGET=h:p run the demo client against a server that is already running"
	@echo "make test            set up, lint (buf + ruff) and run the whole test suite"
	@echo "make demo-pricing    the SPX option chain: implied vols, smile plot, MC and American prices"
	@echo "make demo-stream     replay LOBSTER AAPL + AMZN through the VPIN stream: live view, BVC accuracy, plot"
	@echo "make serve           run the server alone on $(HOST):$(PORT)"
	@echo "make calibrate       measure this host's backends and write the routing profile"
	@echo "make bench           run the benchmarks and write tables under bench/results/"

# --- environment (idempotent: re-runs only when pyproject.toml or package.json change)
$(BIN)/.stamp-setup: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[torch,mlx,dev,demo]'
	touch $@

node_modules/.stamp-setup: package.json package-lock.json
	npm install --silent --no-audit --no-fund
	touch $@

setup: $(BIN)/.stamp-setup node_modules/.stamp-setup

# --- contracts: one command generates every language's code from protos/
$(PROTO_STAMP): $(PROTO_FILES) $(BIN)/.stamp-setup
	$(BIN)/python -m grpc_tools.protoc -Iprotos \
	  --python_out=server --pyi_out=server --grpc_python_out=server $(PROTO_FILES)
	touch $@

proto: $(PROTO_STAMP)

lint: setup proto
	node_modules/.bin/buf lint protos
	@# FILE-level breaking-change check of the working tree against main (when main exists).
	if git rev-parse --verify -q main >/dev/null; then \
	  node_modules/.bin/buf breaking protos --against '.git#branch=main,subdir=protos'; fi
	$(BIN)/ruff check server clients tests bench
	$(BIN)/ruff format --check server clients tests bench

format: setup
	$(BIN)/ruff format server clients tests bench
	$(BIN)/ruff check --fix server clients tests bench

test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

demo: setup proto
	$(BIN)/python clients/python/examples/risk_demo.py $(if $(TARGET),--target $(TARGET),)

demo-pricing: setup proto
	$(BIN)/python clients/python/examples/pricing_demo.py $(if $(TARGET),--target $(TARGET),)

demo-stream: setup proto
	$(BIN)/python clients/python/examples/stream_demo.py $(if $(TARGET),--target $(TARGET),)

serve: setup proto
	$(BIN)/tickwire serve --host $(HOST) --port $(PORT)

calibrate: setup proto
	$(BIN)/tickwire calibrate

bench: setup proto
	$(BIN)/python bench/bench_latency.py
	$(BIN)/python bench/bench_var_backends.py
	$(BIN)/python bench/bench_tensor_encoding.py
	$(BIN)/python bench/bench_pricing.py
	$(BIN)/python bench/bench_stream.py
	$(BIN)/python bench/bench_replay.py

clean:
	rm -rf $(VENV) node_modules $(PROTO_STAMP)
	find server -name '*_pb2*.py*' -delete
