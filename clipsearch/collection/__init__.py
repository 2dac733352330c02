"""The public shard format: Parquet files of embedded images, and the manifest that lists them."""
