"""Offline half of clipsearch: image collections to Parquet shards to FAISS indexes."""
