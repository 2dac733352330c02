"""The HTTP face: OpenAI-compatible embeddings, JSON search, thumbnails and the search page."""
