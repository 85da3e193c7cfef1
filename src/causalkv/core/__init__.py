"""The sans-I/O core of causalkv.

Nothing in this package performs I/O, reads a clock or draws random numbers:
inputs are client requests, peer messages and ticks (with the current time
passed in), outputs are effects that a runtime carries out. The asyncio server
(`causalkv.runtime`) and the deterministic simulator (`causalkv.sim`) drive the
same code. `tests/core/test_purity.py` enforces the rule.
"""
