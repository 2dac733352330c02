"""Step one of the indexer: an image source to Parquet shards, resumably (`clipsearch embed`)."""
