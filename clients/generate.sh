#!/usr/bin/env bash
# Generates the Go, C++, Java and TypeScript code of every .proto under protos/ (and the
# third-party protos in clients/protos: grpc.health.v1, google.rpc) — run by `make proto`.
# Output is git-ignored, never edited. A language whose generator is missing is skipped with
# a message (`make setup-clients` installs them). Files are replaced only when their content
# changed, so incremental C++/Java/Go builds stay incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
PROTOS=$(find protos -name '*.proto' | sort)
EXTRA=$(cd clients/protos && find . -name '*.proto' | sed 's|^\./||' | sort)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# sync SRC DEST: copy files whose content differs, delete files no longer generated.
sync() {
  mkdir -p "$2"
  (cd "$1" && find . -type f) | while read -r f; do
    if ! cmp -s "$1/$f" "$2/$f"; then mkdir -p "$(dirname "$2/$f")"; cp "$1/$f" "$2/$f"; fi
  done
  (cd "$2" && find . -type f ! -name '.stamp*') | while read -r f; do
    [ -e "$1/$f" ] || rm -f "$2/$f"
  done
}
skip() { echo "clients/generate.sh: $1 code not generated: $2 not found (make setup-clients)" >&2; }

# TypeScript: buf + protoc-gen-es (npm, clients/typescript/node_modules).
if [ -x clients/typescript/node_modules/.bin/protoc-gen-es ] && [ -x node_modules/.bin/buf ]; then
  sed "s|out: clients/typescript/gen|out: $TMP/ts|" clients/typescript/buf.gen.yaml > "$TMP/buf.gen.yaml"
  node_modules/.bin/buf generate --template "$TMP/buf.gen.yaml"
  sync "$TMP/ts" clients/typescript/gen
else
  skip TypeScript "clients/typescript/node_modules (npm ci)"
fi

# Go: protoc-gen-go + protoc-gen-go-grpc (Debian). The protos carry no go_package, so each
# file is mapped here: protos/tickwire/risk/v1/x.proto -> package riskv1 (buf's convention)
# at tickwire/clients/go/gen/tickwire/risk/v1. grpc.health.v1 and google.rpc come with grpc-go.
if command -v protoc >/dev/null && command -v protoc-gen-go >/dev/null && command -v protoc-gen-go-grpc >/dev/null; then
  M=""
  for f in $PROTOS; do
    rel=${f#protos/}; dir=$(dirname "$rel")
    pkg=$(basename "$(dirname "$dir")")$(basename "$dir")
    M="$M,M$rel=tickwire/clients/go/gen/$dir;$pkg"
  done
  mkdir -p "$TMP/go"
  protoc -Iprotos --go_out="paths=source_relative$M:$TMP/go" \
    --go-grpc_out="paths=source_relative$M:$TMP/go" $PROTOS
  sync "$TMP/go" clients/go/gen
else
  skip Go "protoc, protoc-gen-go or protoc-gen-go-grpc"
fi

# C++: protoc + grpc_cpp_plugin (Debian), for protos/ and clients/protos.
if command -v protoc >/dev/null && command -v grpc_cpp_plugin >/dev/null; then
  mkdir -p "$TMP/cpp"
  protoc -Iprotos -Iclients/protos --cpp_out="$TMP/cpp" --grpc_out="$TMP/cpp" \
    --plugin=protoc-gen-grpc="$(command -v grpc_cpp_plugin)" $PROTOS $EXTRA
  sync "$TMP/cpp" clients/cpp/gen
else
  skip C++ "protoc or grpc_cpp_plugin"
fi

# Java: protoc + grpc_java_plugin (Debian). google.rpc comes from proto-google-common-protos.
if command -v protoc >/dev/null && [ -x /usr/bin/grpc_java_plugin ]; then
  mkdir -p "$TMP/java"
  protoc -Iprotos -Iclients/protos --java_out="$TMP/java" --grpc-java_out="$TMP/java" \
    --plugin=protoc-gen-grpc-java=/usr/bin/grpc_java_plugin $PROTOS grpc/health/v1/health.proto
  sync "$TMP/java" clients/java/gen
else
  skip Java "protoc or grpc_java_plugin"
fi
