#!/bin/sh
# Builds vendor/ as symlinks into Debian's Go sources (/usr/share/gocode/src), so that the
# module builds offline: `GOFLAGS=-mod=vendor GOPROXY=off go test ./...`. (Plain module mode
# fails offline: grpc-go 1.33's go.mod pulls in modules Debian does not ship.) The versions
# are those of Debian bookworm's packages. vendor/ is a git-ignored link to build/go-vendor at the
# repository root (build outputs stay out of clients/), made again when missing.
set -eu
cd "$(dirname "$0")"
G=/usr/share/gocode/src
MODS="google.golang.org/grpc@v1.33.3 google.golang.org/protobuf@v1.28.1
google.golang.org/genproto@v0.0.0-20200413000000-b5235f65be36 github.com/golang/protobuf@v1.5.2
golang.org/x/net@v0.7.0 golang.org/x/sys@v0.3.0 golang.org/x/text@v0.7.0
go.opentelemetry.io/otel@v1.1.0"
[ -f vendor/modules.txt ] && [ vendor/modules.txt -nt go.mod ] && exit 0
V=../../build/go-vendor
rm -rf vendor "$V"; mkdir -p "$V"; ln -s "$V" vendor; : > vendor/modules.txt.tmp
for mv in $MODS; do
  m=${mv%@*}; v=${mv#*@}
  [ -d "$G/$m" ] || { echo "vendor.sh: $G/$m missing (make setup-clients)" >&2; exit 1; }
  mkdir -p "vendor/$(dirname "$m")"; ln -s "$G/$m" "vendor/$m"
  gv=$(awk '$1=="go"{print $2; exit}' "$G/$m/go.mod" 2>/dev/null || true)
  printf '# %s %s\n## explicit; go %s\n' "$m" "$v" "${gv:-1.11}" >> vendor/modules.txt.tmp
  (cd "$G" && find "$m" -name '*.go' ! -name '*_test.go' ! -path '*/testdata/*' -printf '%h\n' | sort -u) >> vendor/modules.txt.tmp
done
mv vendor/modules.txt.tmp vendor/modules.txt
