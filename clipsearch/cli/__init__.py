"""The `clipsearch` command line, the top layer: `main.py` lists the subcommands and imports
each one's module only when it runs."""
