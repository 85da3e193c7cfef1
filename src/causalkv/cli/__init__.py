"""The `causalkv` command line."""
