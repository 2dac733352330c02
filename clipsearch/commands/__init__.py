"""Subcommands of the `clipsearch` command line; each module registers one."""
