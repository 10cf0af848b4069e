#!/usr/bin/env bash
# Installs the Debian packages the Go, C++ and Java clients build with (`make setup-clients`),
# only those missing. As root it runs apt-get; otherwise it says what is missing and which
# client tests will be skipped (under CI=true those tests fail instead).
set -euo pipefail
PKGS=(
  protobuf-compiler libprotobuf-dev pkg-config
  # Go 1.19, grpc-go 1.33, google.golang.org/protobuf 1.28 (name protobuf 1-5: apt picks 1-3),
  # OpenTelemetry Go 1.1 (trace context of the caller's span)
  golang-go golang-google-grpc-dev golang-github-golang-protobuf-1-5-dev golang-google-protobuf-dev
  protoc-gen-go protoc-gen-go-grpc golang-opentelemetry-otel-dev
  # C++: gRPC 1.51, protobuf 3.21, CMake, nlohmann-json (test fixture)
  g++ cmake libgrpc++-dev protobuf-compiler-grpc nlohmann-json3-dev zlib1g-dev
  # Java 17: grpc-java 1.41 (Netty), protobuf-java 3.21, Maven offline with Debian's repository
  default-jdk-headless maven libgrpc-java libprotobuf-java protobuf-compiler-grpc-java-plugin
  libnetty-java libperfmark-java libgoogle-gson-java libanimal-sniffer-java
  libgoogle-common-protos-java libmaven-compiler-plugin-java libmaven-resources-plugin-java
  libsurefire-java junit4 libbuild-helper-maven-plugin-java
)
missing=()
for p in "${PKGS[@]}"; do
  case $p in \#*) continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "setup-clients: apt-get install ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup-clients: not root (or no apt-get); missing Debian packages: ${missing[*]}" >&2
  echo "setup-clients: the client tests that need them are skipped (they fail under CI=true)" >&2
fi
