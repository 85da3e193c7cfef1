"""causalkv: a sharded, replicated, causally consistent key-value store."""

__version__ = "0.1.0"
