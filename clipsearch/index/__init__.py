"""The public index-version format: a published FAISS index, its vectors and records, and
the CURRENT pointer that names the served version."""
