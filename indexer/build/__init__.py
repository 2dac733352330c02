"""Step two of the indexer: Parquet shards to a measured, published FAISS index version
(`clipsearch build`)."""
