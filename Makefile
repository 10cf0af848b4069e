# Tickwire: the two commands a user needs are `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROTO_FILES := $(shell find protos -name '*.proto' | sort)
PROTO_STAMP := server/tickwire/.stamp-proto
KERNEL_STAMP := server/tickwire/engines/.stamp-kernels
HOST ?= 127.0.0.1
PORT ?= 50051
TARGET ?=

.PHONY: help setup proto lint format test demo demo-pricing demo-portfolio demo-stream serve calibrate bench clean
.PHONY: setup-clients proto-clients demo-clients kernels

help:
	@echo "make demo            set up, start the server on 127.0.0.1, run the risk demo on real prices, stop"
	@echo "make demo TARGET=h:p run the demo client against a server that is already running"
	@echo "make test            set up, lint (buf + ruff) and run the whole test suite"
	@echo "make demo-pricing    the SPX option chain: implied vols, smile plot, MC and American prices"
	@echo "make demo-factors    S&P 500 factor risk model: factor vols, a portfolio's risk split, plot"
	@echo "make demo-analytics  performance statistics of the 470 S&P 500 stocks vs SPY, drawdown plot"
	@echo "make demo-portfolio  470 S&P 500 stocks: max-Sharpe, min-vol, risk parity, HRP by sector; frontier PNG"
	@echo "make demo-stream     replay LOBSTER AAPL + AMZN through the VPIN stream: live view, BVC accuracy, plot"
	@echo "make serve           run the server alone on $(HOST):$(PORT)"
	@echo "make calibrate       measure this host's backends and write the routing profile"
	@echo "make bench           run the benchmarks and write tables under bench/results/"
	@echo "make setup-clients   Debian packages (Go, C++, Java) and npm packages of the clients"
	@echo "make demo-clients    the Go, C++, Java and TypeScript examples against a local server"

# --- environment (idempotent: re-runs only when pyproject.toml or package.json change)
$(BIN)/.stamp-setup: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[torch,mlx,dev,demo]'
	@# toraniko (the factor tests' reference) pins numpy~=1.26; ours is 2.x: no deps.
	$(BIN)/python -m pip install -q --no-deps toraniko==1.1.1
	touch $@

node_modules/.stamp-setup: package.json package-lock.json
	npm ci --silent --no-audit --no-fund
	touch $@

clients/typescript/node_modules/.stamp-setup: clients/typescript/package.json clients/typescript/package-lock.json
	cd clients/typescript && npm ci --silent --no-audit --no-fund
	touch $@

# Go, C++ and Java toolchains from Debian (apt-get as root, only what is missing), npm for TS.
# Only the client tests and demos need them: `make demo` does not.
setup-clients: clients/typescript/node_modules/.stamp-setup
	clients/setup-toolchains.sh

setup: $(BIN)/.stamp-setup node_modules/.stamp-setup

# --- contracts: one command generates every language's code from protos/
$(PROTO_STAMP): $(PROTO_FILES) $(BIN)/.stamp-setup
	$(BIN)/python -m grpc_tools.protoc -Iprotos \
	  --python_out=server --pyi_out=server --grpc_python_out=server $(PROTO_FILES)
	touch $@

# Go, C++, Java and TypeScript code of every proto (files rewritten only when they change).
# Languages whose toolchain is not installed are skipped (`make setup-clients` installs them;
# `make test` does).
proto-clients: clients/typescript/node_modules/.stamp-setup node_modules/.stamp-setup
	clients/generate.sh

proto: $(PROTO_STAMP) proto-clients

# Numba kernels compiled once into their on-disk cache (__pycache__), so that
# no server start or test pays the compilation.
$(KERNEL_STAMP): server/tickwire/engines/vpin_kernel.py server/tickwire/services/trade_wire.py \
		server/tickwire/services/answer_wire.py $(PROTO_STAMP)
	$(BIN)/python -c "from tickwire.engines import vpin_kernel; vpin_kernel.warm_up()"
	$(BIN)/python -c "from tickwire.services import trade_wire; trade_wire.warm_up()"
	rm -f server/tickwire/services/__pycache__/answer_wire.*.nb[ic]  # calls the engine's kernel: Numba's cache does not track that
	$(BIN)/python -c "from tickwire.services import answer_wire; answer_wire.warm_up()"
	touch $@
kernels: $(KERNEL_STAMP)

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

test: setup-clients lint kernels
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

demo: setup proto kernels
	$(BIN)/python clients/python/examples/risk_demo.py $(if $(TARGET),--target $(TARGET),)

demo-clients: setup setup-clients proto kernels
	clients/demo.sh

demo-pricing: setup proto kernels
	$(BIN)/python clients/python/examples/pricing_demo.py $(if $(TARGET),--target $(TARGET),)

.PHONY: demo-factors
demo-factors: setup proto kernels
	$(BIN)/python clients/python/examples/factor_demo.py $(if $(TARGET),--target $(TARGET),)
.PHONY: demo-analytics
demo-analytics: setup proto kernels
	$(BIN)/python clients/python/examples/analytics_demo.py $(if $(TARGET),--target $(TARGET),)
demo-portfolio: setup proto kernels
	$(BIN)/python clients/python/examples/portfolio_demo.py $(if $(TARGET),--target $(TARGET),)
demo-stream: setup proto kernels
	$(BIN)/python clients/python/examples/stream_demo.py $(if $(TARGET),--target $(TARGET),)

serve: setup proto kernels
	$(BIN)/tickwire serve --host $(HOST) --port $(PORT)

calibrate: setup proto kernels
	$(BIN)/tickwire calibrate

bench: setup proto kernels
	$(BIN)/python bench/bench_latency.py
	$(BIN)/python bench/bench_var_backends.py
	$(BIN)/python bench/bench_tensor_encoding.py
	$(BIN)/python bench/bench_pricing.py
	$(BIN)/python bench/bench_clients.py
	$(BIN)/python bench/bench_factor.py
	$(BIN)/python bench/bench_analytics.py
	$(BIN)/python bench/bench_portfolio.py
	$(BIN)/python bench/bench_stream.py
	$(BIN)/python bench/bench_replay.py

clean:
	rm -rf $(VENV) node_modules $(PROTO_STAMP) $(KERNEL_STAMP)
	find server -name '*_pb2*.py*' -delete
	rm -rf clients/*/gen clients/typescript/node_modules clients/typescript/dist clients/go/vendor \
	  clients/go/bin clients/cpp/build clients/cpp/build-bench clients/java/target build/go-vendor build/java-m2
