"""clipsearch: CLIP image retrieval with OpenCLIP, FAISS and gRPC."""
