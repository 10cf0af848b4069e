#!/usr/bin/env bash
# `make demo-clients`: builds each client whose toolchain is present and runs its example
# (health, VaR/CVaR of the 10-stock book from data/daily-prices, a batch of European options,
# a day of trades replayed through the server into the VPIN stream)
# against one local server that clients/with_server.py starts and stops.
set -euo pipefail
cd "$(dirname "$0")"
steps="set -e"
if [ -x typescript/node_modules/.bin/tsc ]; then
  (cd typescript && node_modules/.bin/tsc -p .)
  steps+="; echo '=== TypeScript'; node typescript/dist/examples/risk_pricing.js"
fi
if command -v go >/dev/null; then
  (cd go && ./vendor.sh && GOFLAGS=-mod=vendor GOPROXY=off go build -o bin/risk_pricing ./examples/risk_pricing)
  steps+="; echo '=== Go'; go/bin/risk_pricing"
fi
if command -v cmake >/dev/null && command -v grpc_cpp_plugin >/dev/null; then
  cmake -S cpp -B cpp/build >/dev/null && cmake --build cpp/build -j2 --target risk_pricing >/dev/null
  steps+="; echo '=== C++'; cpp/build/risk_pricing"
fi
if command -v mvn >/dev/null && [ -x /usr/bin/grpc_java_plugin ]; then
  (cd java && mvn -B -q -s settings.xml -Dmaven.repo.local=../../build/java-m2 -DskipTests compile)
  steps+="; echo '=== Java'; (cd java && java -cp \"target/classes:\$(./classpath.sh)\" tickwire.client.examples.RiskPricing)"
fi
exec ../.venv/bin/python with_server.py bash -c "$steps"
