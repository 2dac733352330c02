"""The gRPC face: protobuf in and out, status codes, TLS credentials."""
