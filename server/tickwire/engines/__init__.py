"""Pure math: arrays in, arrays out. No gRPC, no protobuf."""
