"""``causalkv bench``: a load generator for the sharded dialect.

Modules, bottom up: ``histogram`` (latency buckets), ``workloads``
(operation mixes and key distributions), ``connection`` (raw keep-alive
HTTP/1.1 and RESP connections), ``drivers`` (a client session per store),
``lag`` (replication lag sampling), ``worker`` (one generator process),
``runner`` (the controller), ``report``, ``console`` and ``plots``
(output), ``noop_server`` (the ceiling to compare against).
"""

from causalkv.bench.config import BenchConfig, ConfigError
from causalkv.bench.runner import BenchError, run_benchmark

__all__ = ["BenchConfig", "BenchError", "ConfigError", "run_benchmark"]
