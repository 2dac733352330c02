"""Where the embedding stages run: this machine (local) or a Ray cluster (ray)."""
