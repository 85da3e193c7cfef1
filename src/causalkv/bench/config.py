"""Benchmark settings, validated in one place (every input has a limit)."""

from __future__ import annotations

from dataclasses import dataclass

from causalkv.bench.drivers import StoreProtocol
from causalkv.bench.workloads import WORKLOADS, Distribution, workload_named

CLIENTS_MAX = 4096
KEYS_MAX = 50_000_000
VALUE_SIZE_MAX = 8 * 1024 * 1024
DURATION_S_MAX = 24 * 3600.0
PROCESSES_MAX = 64
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


class ConfigError(ValueError):
    """A benchmark setting is out of range."""


@dataclass(frozen=True)
class BenchConfig:
    """Everything a benchmark run needs; picklable, so worker processes get a copy.

    Durations are rounded to whole reporting intervals (``interval_s``).
    The lag sampler probes at most ``lag_samples_per_s_max`` writes per
    second per worker process, with at most ``lag_in_flight_max`` at once.
    """

    targets: tuple[str, ...]
    protocol: StoreProtocol = StoreProtocol.CAUSALKV
    workload: str = "A"
    keys: int = 10_000
    value_size: int = 100
    clients: int = 16
    duration_s: float = 30.0
    warmup_s: float = 5.0
    interval_s: float = 1.0
    distribution: Distribution = Distribution.UNIFORM
    zipf_theta: float = 0.99
    preload: bool = True
    preload_clients: int = 32
    lag_fraction: float = 0.01
    lag_samples_per_s_max: float = 20.0
    lag_in_flight_max: int = 4
    lag_timeout_s: float = 2.0
    request_timeout_s: float = 30.0
    processes: int = 1
    cpus: tuple[int, ...] = ()
    seed: int = 1
    label: str = ""

    def validate(self) -> BenchConfig:
        """Raise ``ConfigError`` if any setting is out of range; return self."""
        if not self.targets:
            raise ConfigError("give at least one target (host:port)")
        for target in self.targets:
            host, separator, port = target.rpartition(":")
            if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"target must be host:port, got {target!r}")
        try:
            workload_named(self.workload)
        except ValueError as error:
            raise ConfigError(str(error)) from error
        _check_range("clients", self.clients, 1, CLIENTS_MAX)
        _check_range("keys", self.keys, 1, KEYS_MAX)
        _check_range("value size", self.value_size, 1, VALUE_SIZE_MAX)
        _check_range("duration", self.duration_s, self.interval_s / 2, DURATION_S_MAX)
        _check_range("warm-up", self.warmup_s, 0, DURATION_S_MAX)
        _check_range("interval", self.interval_s, 0.1, 60)
        _check_range("zipfian theta", self.zipf_theta, 0.01, 0.999)
        _check_range("preload clients", self.preload_clients, 1, CLIENTS_MAX)
        _check_range("lag fraction", self.lag_fraction, 0, 1)
        _check_range("lag samples per second", self.lag_samples_per_s_max, 0, 10_000)
        _check_range("lag samples in flight", self.lag_in_flight_max, 1, 256)
        _check_range("lag timeout", self.lag_timeout_s, 0.01, 600)
        _check_range("request timeout", self.request_timeout_s, 0.01, 3600)
        _check_range("processes", self.processes, 1, PROCESSES_MAX)
        if self.processes > self.clients:
            raise ConfigError("cannot have more generator processes than clients")
        if self.protocol is StoreProtocol.REDIS and len(self.targets) > 1:
            raise ConfigError("the redis adapter drives one server")
        return self

    @property
    def workload_name(self) -> str:
        return workload_named(self.workload).name

    @property
    def warmup_intervals(self) -> int:
        return round(self.warmup_s / self.interval_s)

    @property
    def measured_intervals(self) -> int:
        return max(1, round(self.duration_s / self.interval_s))


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")


__all__ = ["PERCENTILES", "WORKLOADS", "BenchConfig", "ConfigError"]
