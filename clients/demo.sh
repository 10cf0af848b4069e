#!/usr/bin/env bash
# `make demo-clients`: builds each client whose toolchain is present and runs its example
# (health, VaR/CVaR of the 10-stock book from data/daily-prices, a batch of European options)
# against one local server started by clients/with_server.py.
set -euo pipefail
cd "$(dirname "$0")"
PY=../.venv/bin/python
run() { echo; echo "=== $1 ==="; shift; "$@"; }
(cd typescript && node_modules/.bin/tsc -p .)
cmds=("run TypeScript node typescript/dist/examples/risk_pricing.js")
if command -v go >/dev/null; then
  (cd go && ./vendor.sh >/dev/null && GOFLAGS=-mod=vendor GOPROXY=off go build -o bin/risk_pricing ./examples/risk_pricing)
  cmds+=("run Go go/bin/risk_pricing")
fi
if command -v cmake >/dev/null && pkg-config --exists grpc++; then
  cmake -S cpp -B cpp/build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build cpp/build -j2 >/dev/null
  cmds+=("run C++ cpp/build/risk_pricing")
fi
if command -v mvn >/dev/null; then
  (cd java && mvn -B -q -o -s settings.xml -Dmaven.repo.local=.m2 -DskipTests package)
  cmds+=("run Java java -cp java/target/classes:java/target/dependency/* dev.tickwire.client.examples.RiskPricing")
fi
script=""
for c in "${cmds[@]}"; do script+="$c \"\$TICKWIRE_TARGET\"; "; done
exec "$PY" with_server.py bash -c "run() { echo; echo \"=== \$1 ===\"; shift; \"\$@\"; }; $script"
