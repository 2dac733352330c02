"""The API's messages to and from typed queries and results: protobuf for gRPC, and the
same messages in protobuf's JSON mapping for HTTP. Shared by both faces."""
