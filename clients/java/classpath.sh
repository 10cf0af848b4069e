#!/bin/sh
# Prints the runtime classpath of the Java client from Debian's jars (/usr/share/java), for
# running the example without Maven: java -cp "target/classes:$(./classpath.sh)" ...
J=/usr/share/java
for j in grpc-api grpc-core grpc-context grpc-stub grpc-protobuf grpc-protobuf-lite grpc-netty \
  protobuf protobuf-util proto-google-common-protos guava failureaccess gson perfmark-api \
  geronimo-annotation-1.3-spec jsr305 error-prone-annotations netty-common netty-buffer \
  netty-transport netty-codec netty-codec-http netty-codec-http2 netty-handler netty-resolver \
  netty-handler-proxy netty-codec-socks; do
  [ -f "$J/$j.jar" ] && printf '%s:' "$J/$j.jar"
done
echo
