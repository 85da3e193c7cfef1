"""Workloads: which operation each client does next, and on which key.

YCSB's core workloads, plus a causal-chain one:

- ``A``: 50 % reads, 50 % updates (update heavy);
- ``B``: 95 % reads, 5 % updates (read mostly);
- ``C``: reads only;
- ``causal``: each client alternates a read of one key and a write of a
  *different* key; the write carries the metadata that the read returned, so
  every write depends on the value read just before it, and chains form
  across clients through the data (client 2 reads what client 1 wrote, then
  writes, ...).

Keys are ``user<N>`` with N in ``[0, keys)``, chosen uniformly or by YCSB's
scrambled zipfian distribution (Gray et al.'s generator, hot items spread over
the key space by an FNV hash so they do not all sit in one shard).
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass

ZIPF_THETA_DEFAULT = 0.99
KEY_PREFIX = "user"


class OperationKind(enum.Enum):
    READ = "read"
    UPDATE = "update"


class Distribution(enum.Enum):
    UNIFORM = "uniform"
    ZIPFIAN = "zipfian"


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """A named operation mix. ``alternating`` means read/write pairs (``causal``)."""

    name: str
    read_fraction: float
    alternating: bool = False


WORKLOADS: dict[str, WorkloadSpec] = {
    "A": WorkloadSpec("A", 0.5),
    "B": WorkloadSpec("B", 0.95),
    "C": WorkloadSpec("C", 1.0),
    "causal": WorkloadSpec("causal", 0.5, alternating=True),
}


def workload_named(name: str) -> WorkloadSpec:
    """Look a workload up by name (``a``, ``B``, ``causal``, ...)."""
    for key, spec in WORKLOADS.items():
        if key.lower() == name.lower():
            return spec
    raise ValueError(f"unknown workload {name!r}; choose one of {', '.join(WORKLOADS)}")


def key_name(index: int) -> str:
    return f"{KEY_PREFIX}{index}"


class UniformKeys:
    """Every key equally likely."""

    __slots__ = ("keys", "random")

    def __init__(self, keys: int, rng: random.Random) -> None:
        self.keys = keys
        self.random = rng

    def next_index(self) -> int:
        return self.random.randrange(self.keys)


def _zeta(count: int, theta: float) -> float:
    return math.fsum(1.0 / math.pow(i, theta) for i in range(1, count + 1))


_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1


def fnv1a_64(value: int) -> int:
    """FNV-1a over the 8 little-endian bytes of ``value`` (YCSB's scrambler)."""
    hashed = _FNV_OFFSET
    for _ in range(8):
        hashed ^= value & 0xFF
        hashed = (hashed * _FNV_PRIME) & _MASK64
        value >>= 8
    return hashed


class ZipfianKeys:
    """YCSB's scrambled zipfian: rank r has weight 1/r**theta; ranks are
    hashed onto key indexes so popular keys are spread out."""

    __slots__ = ("alpha", "eta", "keys", "random", "theta", "zeta_n")

    _zeta_cache: dict[tuple[int, float], float] = {}  # noqa: RUF012 (a process-wide cache)

    def __init__(self, keys: int, rng: random.Random, theta: float = ZIPF_THETA_DEFAULT) -> None:
        if not 0 < theta < 1:
            raise ValueError("zipfian theta must be in (0, 1)")
        self.keys = keys
        self.random = rng
        self.theta = theta
        cached = self._zeta_cache.get((keys, theta))
        if cached is None:
            cached = _zeta(keys, theta)
            self._zeta_cache[(keys, theta)] = cached
        self.zeta_n = cached
        zeta_2 = _zeta(2, theta)
        self.alpha = 1.0 / (1.0 - theta)
        self.eta = (
            (1 - (2.0 / keys) ** (1 - theta)) / (1 - zeta_2 / self.zeta_n) if keys > 1 else 0.0
        )

    def next_rank(self) -> int:
        """A rank in ``[0, keys)``, 0 the most popular."""
        u = self.random.random()
        uz = u * self.zeta_n
        if uz < 1.0:
            return 0
        if uz < 1.0 + 0.5**self.theta:
            return min(1, self.keys - 1)
        rank = int(self.keys * ((self.eta * u - self.eta + 1) ** self.alpha))
        return min(rank, self.keys - 1)

    def next_index(self) -> int:
        return fnv1a_64(self.next_rank()) % self.keys


KeyChooser = UniformKeys | ZipfianKeys


def make_key_chooser(
    distribution: Distribution, keys: int, rng: random.Random, theta: float = ZIPF_THETA_DEFAULT
) -> KeyChooser:
    if distribution is Distribution.UNIFORM:
        return UniformKeys(keys, rng)
    return ZipfianKeys(keys, rng, theta)


class OperationStream:
    """One client's endless sequence of ``(kind, key index)``."""

    __slots__ = ("chooser", "last_read", "next_is_write", "random", "spec")

    def __init__(self, spec: WorkloadSpec, chooser: KeyChooser, rng: random.Random) -> None:
        self.spec = spec
        self.chooser = chooser
        self.random = rng
        self.next_is_write = False
        self.last_read = -1

    def next_operation(self) -> tuple[OperationKind, int]:
        if self.spec.alternating:
            return self._next_causal()
        kind = (
            OperationKind.READ
            if self.random.random() < self.spec.read_fraction
            else OperationKind.UPDATE
        )
        return kind, self.chooser.next_index()

    def _next_causal(self) -> tuple[OperationKind, int]:
        index = self.chooser.next_index()
        if not self.next_is_write:
            self.next_is_write = True
            self.last_read = index
            return OperationKind.READ, index
        self.next_is_write = False
        if index == self.last_read and self.chooser.keys > 1:
            # write a *different* key than the one read: the dependency must cross keys
            index = (index + 1) % self.chooser.keys
        return OperationKind.UPDATE, index
