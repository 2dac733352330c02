"""Online half of clipsearch: the gRPC retrieval server."""
