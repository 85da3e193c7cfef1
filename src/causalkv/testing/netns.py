"""Real-network fault-injection harness: test hosts in Linux network namespaces.

Theory of operation
===================

Topology
--------
One ``Network`` is one run with a unique prefix ``P`` (``ckvn`` + 6 random hex
digits, e.g. ``ckvn3f9a21``).  It owns one "switch" namespace holding a Linux
bridge, one namespace per test host, and a single veth in the root namespace so
that the test client (pytest itself) can reach every host directly::

    root namespace (test client)              switch namespace  P-sw
    +---------------------------+             +------------------------------------+
    | P-cl  10.213.X.1/24       |--- veth ----| P-up --+                           |
    +---------------------------+             |        |                           |
                                              |     bridge P-br                    |
    host namespace P-h0                       |        |   nft table `bridge P`:   |
    | P-eth0 10.213.X.10/24     |--- veth ----| P-p0 --+   partition drop rules    |
    host namespace P-h1                       |        |   (iifname/oifname pairs) |
    | P-eth0 10.213.X.11/24     |--- veth ----| P-p1 --+                           |
    ...                                       +------------------------------------+

Addressing
----------
Each run gets its own ``/24`` inside ``10.213.0.0/16`` (the first one that
overlaps no address or route of the root namespace; chosen under a lock file so
that concurrent runs never pick the same one).  ``.1`` is the root-namespace
client, host ``i`` is ``.(10 + i)``.  Hosts get no default route: they can only
talk to the run's own subnet, never to any other address.

Partition rules (nftables, on the bridge)
-----------------------------------------
Partitions are ``drop`` rules in one ``bridge``-family nftables table inside the
switch namespace, matching *bridge ports*: ``iifname "P-p0" oifname "P-p1"
drop`` blocks every frame (IPv4, ARP, anything) from host 0 to host 1 and
nothing else.  Why there, and why nftables:

* the drop happens in the middle of the network: senders see no local error
  (an ``OUTPUT`` drop inside the sender would return ``EPERM`` to the sending
  socket, which no real network fault does);
* the client's port ``P-up`` never appears in a rule, so the root client always
  reaches every host;
* the whole rule set is regenerated atomically in one ``nft -f -`` transaction
  (``heal()`` is one ``flush chain``), and the bridge family needs neither
  ``br_netfilter`` nor ebtables;
* nothing is ever written to the root namespace's firewall: the table dies with
  the switch namespace.

Link impairment (``set_link``), two backends with the same meaning
------------------------------------------------------------------
Impairment applies to IPv4 packets a host *sends* to the run's subnet (host
egress), so ``set_link(a, delay_ms=50)`` adds 50 ms to every a<->b round trip.
Traffic to the root client is exempt unless ``include_client=True``; traffic
*from* the client is never shaped.  ARP is never shaped.

* ``netem`` (preferred when the kernel has ``sch_netem``): a ``prio`` root qdisc
  on the host's interface, ``netem`` on band 2, ``u32`` filters steering subnet
  traffic (minus the client) to it.
* ``nfqueue`` (fallback for kernels built without netem, such as this
  project's CI machines): an ``iptables -j NFQUEUE`` rule in the host's
  ``OUTPUT`` chain hands packets to a small emulator process running in the
  host's namespace (this file, ``link-emulator`` sub-command) that drops
  (loss), releases at once (reorder) or holds packets for delay +/- jitter,
  speaking nfnetlink_queue directly.  Duplication is an nftables ``dup`` rule in
  the host's namespace.  ``--queue-bypass`` lets traffic through unshaped if the
  emulator dies.

``link_backend="auto"`` picks netem when the kernel has it, else nfqueue;
``Network(link_backend=...)`` or ``CAUSALKV_NETNS_LINK_BACKEND`` override it.

Processes
---------
``Host.spawn`` runs ``ip netns exec NS argv`` (which execs ``argv``: the pid is
the program's) in a new session (its own process group) with
``PR_SET_PDEATHSIG=SIGKILL``, so it dies if the harness process dies.  Signals
(pause/resume/kill) go to the whole process group.

Cleanup strategy
----------------
Everything a run creates is named with its prefix and is either inside a
namespace of the run or is the root veth ``P-cl``; the run holds an exclusive
``flock`` on ``/run/causalkv-netns/P.lock`` while alive.  Teardown (idempotent,
run on ``__exit__``, on exceptions, on SIGINT, on SIGTERM/SIGHUP -- converted to
``HarnessInterrupted`` while a Network is live -- and at interpreter exit):
kill spawned process groups, kill any other process left in the namespaces
(``ip netns pids``), delete ``P-cl``, delete the namespaces (which takes every
link, qdisc and rule inside with it), then verify that nothing named ``P*`` is
left and raise ``CleanupError`` (and log) if anything is.  Signals are deferred
while teardown runs.  ``sweep_leftovers()`` finds every prefix on the machine
whose lock is not held (a crashed run) and applies the same teardown.  Logs of
spawned processes go to a per-run work directory (``$TMPDIR/P-*``), removed on
a clean exit, kept (and its path logged) when the ``with`` block raised, and
removed by the next sweep.

Requirements
------------
Root, and the Debian packages ``iproute2`` (ip, tc), ``nftables`` (nft) and
``iptables`` (NFQUEUE, only for the nfqueue backend).  ``netns_unavailable_reason()``
probes all of it once (in a throw-away namespace) and says what is missing.
From a shell: ``python -m causalkv.testing.netns check`` / ``... sweep``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import errno
import fcntl
import functools
import heapq
import ipaddress
import logging
import os
import random
import re
import secrets
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, Final, Literal

__all__ = [
    "CleanupError",
    "CommandError",
    "HarnessInterrupted",
    "Host",
    "HostProcess",
    "LinkBackend",
    "LinkSpec",
    "NetnsError",
    "Network",
    "available_link_backend",
    "leftovers",
    "netns_unavailable_reason",
    "sweep_leftovers",
]

logger = logging.getLogger(__name__)

LinkBackend = Literal["netem", "nfqueue"]

PREFIX_STEM: Final = "ckvn"
_PREFIX_RE: Final = re.compile(r"^(ckvn[0-9a-f]{6})(?![0-9a-f])")
DEFAULT_SUPERNET: Final = ipaddress.IPv4Network("10.213.0.0/16")
STATE_DIR: Final = Path("/run/causalkv-netns")
FIRST_HOST_OFFSET: Final = 10
_CMD_TIMEOUT_S: Final = 20.0
_DEFERRED_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_CONVERTED_SIGNALS: Final = (signal.SIGTERM, signal.SIGHUP)
_LINK_BACKEND_ENV: Final = "CAUSALKV_NETNS_LINK_BACKEND"


# --------------------------------------------------------------------------- errors


class NetnsError(RuntimeError):
    """Base class for harness errors."""


class CommandError(NetnsError):
    """An external command (ip, tc, nft, iptables) failed or timed out."""

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int | None,
        stderr: str,
        *,
        input_text: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        status = reason or f"exit {returncode}"
        message = f"command failed ({status}): {shlex.join(self.argv)}"
        if stderr.strip():
            message += f"\n  stderr: {stderr.strip()}"
        if input_text:
            message += "\n  stdin:\n    " + input_text.strip().replace("\n", "\n    ")
        super().__init__(message)


class CleanupError(NetnsError):
    """Teardown could not remove everything; the message lists what is left."""


class HarnessInterrupted(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM/SIGHUP while a Network is live."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


# --------------------------------------------------------------------------- commands


def _run(
    argv: Sequence[str],
    *,
    input_text: str | None = None,
    timeout_s: float = _CMD_TIMEOUT_S,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output, raise CommandError on failure."""
    try:
        proc = subprocess.run(
            list(argv),
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise CommandError(
            argv, None, stderr, input_text=input_text, reason=f"timed out after {timeout_s}s"
        ) from None
    except OSError as exc:
        raise CommandError(argv, None, str(exc), reason="could not start") from None
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stderr, input_text=input_text)
    return proc


def _cmd(template: str, **fields: object) -> list[str]:
    """argv from a whitespace-separated template, filling ``{name}`` from ``fields``.

    Each field value is one word (a name, an address): it is never split.
    """
    return [word.format(**fields) for word in template.split()]


def _nft(netns: str, script: str) -> None:
    """Apply an nftables script atomically inside ``netns``."""
    _run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input_text=script)


def _iptables(netns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run(["ip", "netns", "exec", netns, "iptables", "-w", "10", *args], check=check)


# --------------------------------------------------------------------------- processes

_THIS_FILE: Final = str(Path(__file__).resolve())
_PR_SET_PDEATHSIG: Final = 1
_libc: Any = ctypes.CDLL(None, use_errno=True)


def _child_preexec(parent_pid: int) -> Callable[[], None]:
    """Return a preexec_fn that makes the child die with the harness process."""

    def setup() -> None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # parent already gone: do not outlive it
            os.kill(os.getpid(), signal.SIGKILL)

    return setup


def _popen_in_netns(
    netns: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None,
    stdout: IO[bytes] | int,
    stderr: IO[bytes] | int,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.Popen[bytes]:
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.Popen(
        ["ip", "netns", "exec", netns, *argv],
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=_child_preexec(os.getpid()),
        close_fds=True,
    )


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False if the group is gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


class HostProcess:
    """A process started inside a host's namespace (see ``Host.spawn``)."""

    def __init__(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None,
        log_path: Path,
        cwd: str | os.PathLike[str] | None,
    ) -> None:
        self.host = host
        self.argv: tuple[str, ...] = tuple(argv)
        self.env: dict[str, str] | None = dict(env) if env is not None else None
        self.log_path = log_path
        self.cwd = cwd
        self.starts = 0
        self._popen: subprocess.Popen[bytes] | None = None
        self._start()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else f"exited({self.returncode})"
        return f"<HostProcess {self.host.name} pid={self.pid} {state} {shlex.join(self.argv)}>"

    def _start(self) -> None:
        self.starts += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"=== start #{self.starts}: {shlex.join(self.argv)}\n".encode())
            log.flush()
            self._popen = _popen_in_netns(
                self.host.netns,
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
            )

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        assert self._popen is not None
        return self._popen

    @property
    def pid(self) -> int:
        """Pid of the current incarnation (also its process-group id)."""
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def is_running(self) -> bool:
        """True while the process exists (a paused process is running)."""
        return self.popen.poll() is None

    def _require_running(self, action: str) -> None:
        if not self.is_running():
            raise NetnsError(f"cannot {action} {self!r}: it has exited")

    def pause(self) -> None:
        """SIGSTOP the process group."""
        self._require_running("pause")
        _signal_group(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT the process group."""
        self._require_running("resume")
        _signal_group(self.pid, signal.SIGCONT)

    def kill(self) -> int:
        """SIGKILL the process group and reap the process; returns its exit status."""
        _signal_group(self.pid, signal.SIGKILL)
        return self.popen.wait(timeout=10)

    def terminate(self, timeout_s: float = 5.0) -> int:
        """SIGTERM (+SIGCONT) the group, SIGKILL it after ``timeout_s``."""
        if _signal_group(self.pid, signal.SIGTERM):
            _signal_group(self.pid, signal.SIGCONT)
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return self.kill()
        finally:
            _signal_group(self.pid, signal.SIGKILL)  # stragglers in the group

    def restart(self) -> None:
        """Start the same argv/env again (SIGKILLing the old one if still running)."""
        self.kill()
        self._start()

    def wait(self, timeout_s: float | None = None) -> int:
        return self.popen.wait(timeout=timeout_s)

    def read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_port(self, port: int, timeout_s: float = 10.0) -> None:
        """Wait until ``host.ip:port`` accepts TCP connections from the root namespace."""
        deadline = time.monotonic() + timeout_s
        last_error: OSError | None = None
        while True:
            if not self.is_running():
                raise NetnsError(
                    f"{self!r} exited before {self.host.ip}:{port} opened; log tail:\n"
                    f"{self.read_log()[-2000:]}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{self.host.ip}:{port} not accepting after {timeout_s}s "
                    f"(last error: {last_error}); log tail:\n{self.read_log()[-2000:]}"
                )
            try:
                with socket.create_connection((self.host.ip, port), timeout=min(0.5, remaining)):
                    return
            except OSError as exc:
                last_error = exc
            time.sleep(0.05)


# --------------------------------------------------------------------------- hosts


class Host:
    """One test host: a network namespace with one address on the run's bridge."""

    def __init__(self, network: Network, index: int, name: str, ip: str) -> None:
        self.network = network
        self.index = index
        self.name = name
        self.ip = ip
        self.netns = f"{network.prefix}-h{index}"
        self.ifname = f"{network.prefix}-eth0"
        self.switch_port = f"{network.prefix}-p{index}"

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.ip} netns={self.netns}>"

    def netns_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so that it runs inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> HostProcess:
        """Start ``argv`` inside this host; stdout+stderr go to ``log_path``.

        ``env`` is merged over the harness's own environment.  Without
        ``log_path`` the log goes to the run's work directory.
        """
        return self.network._spawn(self, argv, env=env, log_path=log_path, cwd=cwd)

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float = 30.0,
        check: bool = True,
        input_text: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` to completion inside this host and capture its output."""
        return _run(self.netns_argv(argv), input_text=input_text, timeout_s=timeout_s, check=check)


# --------------------------------------------------------------------------- link specs


@dataclass(frozen=True)
class LinkSpec:
    """Impairment of one host's egress traffic to the run's subnet."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_percent: float = 0.0
    reorder_percent: float = 0.0
    duplicate_percent: float = 0.0
    include_client: bool = False

    def validate(self) -> None:
        for field in ("delay_ms", "jitter_ms"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field} must be >= 0")
        for field in ("loss_percent", "reorder_percent", "duplicate_percent"):
            if not 0 <= getattr(self, field) <= 100:
                raise ValueError(f"{field} must be within [0, 100]")
        if self.reorder_percent and not self.delay_ms:
            raise ValueError(
                "reorder_percent needs delay_ms > 0 (reordered packets skip the delay)"
            )

    @property
    def needs_queue(self) -> bool:
        return bool(self.delay_ms or self.jitter_ms or self.loss_percent or self.reorder_percent)


class _NetemShaper:
    """netem on a band of a prio qdisc on the host's interface (host egress)."""

    name: Final = "netem"

    def __init__(self, network: Network) -> None:
        self.network = network

    def apply(self, host: Host, spec: LinkSpec) -> None:
        self.clear(host)
        net, at = self.network, {"ns": host.netns, "dev": host.ifname}
        tc = "tc -n {ns} "
        _run(_cmd(tc + "qdisc add dev {dev} root handle 1: prio bands 2 priomap" + " 0" * 16, **at))
        _run(
            _cmd(tc + "qdisc add dev {dev} parent 1:2 handle 20: netem limit 100000", **at)
            + _netem_args(spec)
        )
        u32 = tc + "filter add dev {dev} parent 1: protocol ip prio {prio} u32 match ip dst {dst}"
        if not spec.include_client:
            _run(_cmd(u32 + " flowid 1:1", prio=1, dst=f"{net.client_ip}/32", **at))
        _run(_cmd(u32 + " flowid 1:2", prio=2, dst=net.subnet, **at))

    def clear(self, host: Host) -> None:
        shown = _run(["tc", "-n", host.netns, "qdisc", "show", "dev", host.ifname]).stdout
        if "netem" in shown or "prio 1:" in shown:
            _run(["tc", "-n", host.netns, "qdisc", "del", "dev", host.ifname, "root"])

    def close(self) -> None:
        """Nothing to stop: qdiscs die with the namespaces."""


def _netem_args(spec: LinkSpec) -> list[str]:
    args: list[str] = []
    if spec.delay_ms or spec.jitter_ms:
        args += ["delay", f"{spec.delay_ms}ms", f"{spec.jitter_ms}ms"]
    if spec.loss_percent:
        args += ["loss", f"{spec.loss_percent}%"]
    if spec.duplicate_percent:
        args += ["duplicate", f"{spec.duplicate_percent}%"]
    if spec.reorder_percent:
        args += ["reorder", f"{spec.reorder_percent}%"]
    return args


class _NfqueueShaper:
    """NFQUEUE + userspace emulator (delay/jitter/loss/reorder), nft dup (duplicate)."""

    name: Final = "nfqueue"

    def __init__(self, network: Network) -> None:
        self.network = network
        self._emulators: dict[int, subprocess.Popen[bytes]] = {}
        self._applied: dict[int, LinkSpec] = {}

    @property
    def _chain(self) -> str:
        return f"{self.network.prefix}-link"

    @property
    def _table(self) -> str:
        return f"{self.network.prefix}_link"

    def apply(self, host: Host, spec: LinkSpec) -> None:
        self.clear(host)
        self._applied[host.index] = spec
        if spec.duplicate_percent:
            _nft(host.netns, self._dup_script(host, spec))
        if spec.needs_queue:
            self._emulators[host.index] = self._start_emulator(host, spec)
            self._install_queue_rules(host, spec)

    def _dup_script(self, host: Host, spec: LinkSpec) -> str:
        match = f'oifname "{host.ifname}" ip daddr {self.network.subnet}'
        if not spec.include_client:
            match += f" ip daddr != {self.network.client_ip}"
        threshold = round(spec.duplicate_percent * 100)
        return (
            f"add table ip {self._table}\n"
            f"add chain ip {self._table} out "
            "{ type filter hook output priority -10; policy accept; }\n"
            f"add rule ip {self._table} out {match} numgen random mod 10000 < {threshold} "
            f'dup to ip daddr device "{host.ifname}" comment "{self.network.prefix}"\n'
        )

    def _install_queue_rules(self, host: Host, spec: LinkSpec) -> None:
        ns, chain = host.netns, self._chain
        _iptables(ns, "-N", chain)
        if not spec.include_client:
            _iptables(ns, "-A", chain, "-d", f"{self.network.client_ip}/32", "-j", "RETURN")
        rule = "-A {chain} -d {subnet} -m comment --comment {prefix} -j NFQUEUE --queue-num 0"
        _iptables(
            ns,
            *_cmd(
                rule + " --queue-bypass",
                chain=chain,
                subnet=self.network.subnet,
                prefix=self.network.prefix,
            ),
        )
        _iptables(ns, "-A", "OUTPUT", "-o", host.ifname, "-j", chain)

    def _start_emulator(self, host: Host, spec: LinkSpec) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable,
            "-I",
            _THIS_FILE,
            "link-emulator",
            *_cmd(
                "--queue 0 --delay-ms {d} --jitter-ms {j} --loss-percent {l} --reorder-percent {r}",
                d=spec.delay_ms,
                j=spec.jitter_ms,
                l=spec.loss_percent,
                r=spec.reorder_percent,
            ),
        ]
        log_path = self.network.workdir / f"link-emulator-{host.name}.log"
        with log_path.open("ab") as log:
            proc = _popen_in_netns(host.netns, argv, env=None, stdout=subprocess.PIPE, stderr=log)
        _await_ready_line(proc, log_path, timeout_s=15.0)
        return proc

    def clear(self, host: Host) -> None:
        if self._applied.pop(host.index, None) is None:
            return
        ns = host.netns
        if _iptables(ns, "-S", self._chain, check=False).returncode == 0:
            _iptables(ns, "-D", "OUTPUT", "-o", host.ifname, "-j", self._chain)
            _iptables(ns, "-F", self._chain)
            _iptables(ns, "-X", self._chain)
        listed = _run(["ip", "netns", "exec", ns, "nft", "list", "tables"]).stdout
        if f"table ip {self._table}" in listed:
            _nft(ns, f"delete table ip {self._table}\n")
        proc = self._emulators.pop(host.index, None)
        if proc is not None:
            _stop_emulator(proc)

    def close(self) -> None:
        for proc in self._emulators.values():
            _signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self._emulators.clear()
        self._applied.clear()


def _await_ready_line(proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> None:
    """Wait for the emulator's ``ready`` line; kill it and raise if it does not come."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    line = proc.stdout.readline() if ready else b""
    proc.stdout.close()
    if line.strip() == b"ready":
        return
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)
    log = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
    raise NetnsError(f"link emulator did not become ready (exit {proc.returncode}):\n{log}")


def _stop_emulator(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the emulator (it releases held packets first), SIGKILL if it hangs."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


_Shaper = _NetemShaper | _NfqueueShaper


# --------------------------------------------------------------------------- locks


class _RunLock:
    """An exclusive flock on a lock file; held for a run's whole lifetime."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                same_file = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:  # not unlinked by a sweeper between open() and flock()
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())  # for humans; flock is the truth
                self._fd = fd
                return True
            os.close(fd)

    def acquire(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.try_acquire():
            if time.monotonic() > deadline:
                raise NetnsError(f"could not lock {self.path} within {timeout_s}s")
            time.sleep(0.05)

    def release(self, *, unlink: bool) -> None:
        if self._fd is None:
            return
        if unlink:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


def _state_dir() -> Path:
    return STATE_DIR


def _lock_path(prefix: str) -> Path:
    return _state_dir() / f"{prefix}.lock"


# --------------------------------------------------------------------------- discovery


def _list_netns() -> list[str]:
    out = _run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _list_root_links() -> list[str]:
    out = _run(["ip", "-o", "link", "show"]).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def _list_root_nft_tables() -> list[str]:
    if shutil.which("nft") is None:
        return []
    out = _run(["nft", "list", "tables"]).stdout
    return [" ".join(line.split()[1:3]) for line in out.splitlines() if line.startswith("table ")]


def _list_lock_prefixes() -> list[str]:
    directory = _state_dir()
    if not directory.is_dir():
        return []
    return [p.stem for p in directory.glob(f"{PREFIX_STEM}*.lock") if _PREFIX_RE.match(p.stem)]


def _workdirs(prefix: str | None) -> list[Path]:
    """Per-run log directories (``$TMPDIR/P-*``), of one prefix or of all."""
    pattern = f"{prefix or PREFIX_STEM + '?' * 6}-*"
    return [p for p in Path(tempfile.gettempdir()).glob(pattern) if _prefix_of(p.name)]


def _owned(name: str, prefix: str | None) -> bool:
    return name.startswith(prefix) if prefix else _PREFIX_RE.match(name) is not None


def leftovers(prefix: str | None = None, *, include_lock_files: bool = True) -> list[str]:
    """Everything on this machine named with ``prefix`` (any harness prefix if None).

    Lists namespaces, root-namespace links, root-namespace nftables tables and
    lock files, as ``"<kind> <name>"`` strings.
    """
    found = [f"netns {n}" for n in _list_netns() if _owned(n, prefix)]
    found += [f"link {n}" for n in _list_root_links() if _owned(n, prefix)]
    found += [f"nft-table {t}" for t in _list_root_nft_tables() if _owned(t.split()[-1], prefix)]
    if include_lock_files:
        found += [f"lockfile {p}" for p in _list_lock_prefixes() if _owned(p, prefix)]
    return found


def _prefix_of(name: str) -> str | None:
    match = _PREFIX_RE.match(name)
    return match.group(1) if match else None


# --------------------------------------------------------------------------- teardown


def _kill_netns_processes(netns: str, timeout_s: float = 5.0) -> list[int]:
    """SIGKILL every process inside ``netns`` and wait until none is left."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout_s
    while True:
        pids = [int(p) for p in _run(["ip", "netns", "pids", netns], check=False).stdout.split()]
        if not pids:
            return killed
        if time.monotonic() > deadline:
            raise NetnsError(f"processes {pids} in netns {netns} survive SIGKILL")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        time.sleep(0.05)


def _attempt(errors: list[str], what: str, action: Callable[[], object]) -> None:
    """Run one teardown step; record (not raise) its failure so later steps still run."""
    try:
        action()
    except Exception as exc:
        errors.append(f"{what}: {exc}")


def _destroy_prefix(prefix: str) -> list[str]:
    """Remove every namespace and root link named ``prefix*``; return error strings."""
    errors: list[str] = []
    namespaces = [n for n in _list_netns() if n.startswith(prefix)]
    for ns in namespaces:
        _attempt(errors, f"kill processes in {ns}", functools.partial(_kill_netns_processes, ns))
    for link in (n for n in _list_root_links() if n.startswith(prefix)):
        _attempt(errors, f"delete link {link}", functools.partial(_delete_link, link))
    for ns in namespaces:
        _attempt(errors, f"delete netns {ns}", functools.partial(_delete_netns, ns))
    for table in (t for t in _list_root_nft_tables() if t.split()[-1].startswith(prefix)):
        _attempt(
            errors,
            f"delete nft table {table}",
            functools.partial(_run, ["nft", "delete", "table", *table.split()]),
        )
    return errors


def _delete_link(name: str) -> None:
    result = _run(["ip", "link", "del", name], check=False)
    if result.returncode != 0 and name in _list_root_links():
        raise CommandError(["ip", "link", "del", name], result.returncode, result.stderr)


def _delete_netns(name: str) -> None:
    result = _run(["ip", "netns", "del", name], check=False)
    if result.returncode != 0 and name in _list_netns():
        raise CommandError(["ip", "netns", "del", name], result.returncode, result.stderr)


def sweep_leftovers() -> list[str]:
    """Remove everything left behind by crashed runs; return what was removed.

    A run is considered dead when its lock file is not locked; live runs (in
    this or another process) are left alone.  Log directories that dead runs
    kept after a failure are removed too.  Raises CleanupError if something
    could not be removed.
    """
    reason = _check_static()
    if reason is not None:
        raise NetnsError(f"cannot sweep: {reason}")
    prefixes: set[str] = set(_list_lock_prefixes())
    for name in _list_netns() + _list_root_links() + [p.name for p in _workdirs(None)]:
        if (prefix := _prefix_of(name)) is not None:
            prefixes.add(prefix)
    removed: list[str] = []
    errors: list[str] = []
    for prefix in sorted(prefixes):
        lock = _RunLock(_lock_path(prefix))
        if not lock.try_acquire():
            logger.info("sweep: %s belongs to a live run, skipped", prefix)
            continue
        try:
            found = leftovers(prefix, include_lock_files=False)
            errors += _destroy_prefix(prefix)
            for workdir in _workdirs(prefix):  # logs kept by a failed run
                shutil.rmtree(workdir, ignore_errors=True)
                found.append(f"workdir {workdir}")
            removed += found
            if found:
                logger.warning("sweep: removed leftovers of crashed run %s: %s", prefix, found)
        finally:
            lock.release(unlink=True)
    if errors:
        _raise_cleanup_errors("sweep_leftovers", errors)
    return removed


def _raise_cleanup_errors(what: str, errors: Sequence[str]) -> None:
    message = f"{what}: cleanup failed:\n  " + "\n  ".join(errors)
    logger.error("%s", message)
    raise CleanupError(message)


# --------------------------------------------------------------------------- signals

_live_lock = threading.Lock()
_live: list[Network] = []
_saved_handlers: dict[int, Any] = {}


def _on_fatal_signal(signum: int, frame: FrameType | None) -> None:
    raise HarnessInterrupted(signum)


def _register_live(network: Network, handle_signals: bool) -> None:
    with _live_lock:
        _live.append(network)
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in _CONVERTED_SIGNALS:
            if sig not in _saved_handlers and signal.getsignal(sig) == signal.SIG_DFL:
                _saved_handlers[sig] = signal.signal(sig, _on_fatal_signal)


def _unregister_live(network: Network) -> None:
    with _live_lock:
        if network in _live:
            _live.remove(network)
        still_live = bool(_live)
    if still_live or threading.current_thread() is not threading.main_thread():
        return
    for sig, previous in list(_saved_handlers.items()):
        if signal.getsignal(sig) is _on_fatal_signal:
            signal.signal(sig, previous)
        del _saved_handlers[sig]


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP until the block is done (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@atexit.register
def _close_all_live() -> None:
    with _live_lock:
        networks = list(_live)
    for network in networks:
        with contextlib.suppress(Exception):
            network.close()


# --------------------------------------------------------------------------- network


def _used_ipv4_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 address network and route destination of the root namespace."""
    used: list[ipaddress.IPv4Network] = []
    for line in _run(["ip", "-4", "-o", "addr", "show"]).stdout.splitlines():
        tokens = line.split()
        if "inet" in tokens:
            used.append(ipaddress.IPv4Interface(tokens[tokens.index("inet") + 1]).network)
    for line in _run(["ip", "-4", "route", "show", "table", "all"]).stdout.splitlines():
        for token in line.split()[:2]:
            with contextlib.suppress(ValueError):
                net = ipaddress.IPv4Network(token, strict=False)
                if net.prefixlen > 0:
                    used.append(net)
                break
    return used


def _pick_subnet(requested: str | None) -> ipaddress.IPv4Network:
    used = _used_ipv4_networks()
    candidates = (
        [ipaddress.IPv4Network(requested)]
        if requested
        else list(DEFAULT_SUPERNET.subnets(new_prefix=24))
    )
    for candidate in candidates:
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise NetnsError(f"no free subnet among {candidates[0]}..{candidates[-1]} (all in use)")


class Network:
    """N test hosts on a private bridge, with fault injection.  A context manager.

    ``with Network(3) as net:`` creates hosts ``h0..h2``; ``net.hosts``,
    ``net["h1"]`` / ``net[1]`` give them; ``net.client_ip`` is the root
    namespace's address on the bridge.  Partition methods are cumulative
    (each adds drop rules); ``heal()`` removes them all.
    """

    def __init__(
        self,
        n_hosts: int = 3,
        *,
        names: Sequence[str] | None = None,
        subnet: str | None = None,
        link_backend: Literal["auto", "netem", "nfqueue"] = "auto",
        handle_signals: bool = True,
    ) -> None:
        if names is not None and (len(names) != n_hosts or len(set(names)) != n_hosts):
            raise ValueError("names must be n_hosts distinct strings")
        if not 1 <= n_hosts <= 200:
            raise ValueError("n_hosts must be within [1, 200]")
        self.prefix = f"{PREFIX_STEM}{secrets.token_hex(3)}"
        self._names = list(names) if names is not None else [f"h{i}" for i in range(n_hosts)]
        self._requested_subnet = subnet
        self._requested_backend = link_backend
        self._handle_signals = handle_signals
        self.switch_netns = f"{self.prefix}-sw"
        self.bridge = f"{self.prefix}-br"
        self.client_link = f"{self.prefix}-cl"
        self.hosts: tuple[Host, ...] = ()
        self.subnet = ipaddress.IPv4Network("0.0.0.0/32")
        self.client_ip = ""
        self.workdir = Path()
        self.link_backend: LinkBackend | None = None
        self._lock = _RunLock(_lock_path(self.prefix))
        self._processes: list[HostProcess] = []
        self._blocked: set[tuple[int, int]] = set()
        self._shaper: _Shaper | None = None
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        return f"<Network {self.prefix} {self.subnet} hosts={[h.name for h in self.hosts]}>"

    # -- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> Network:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close(keep_workdir=exc_type is not None)
        except CleanupError:
            if exc_type is None:
                raise
            # the original exception propagates; the cleanup failure was logged

    def start(self) -> Network:
        """Create namespaces, bridge, links and rule table (idempotent)."""
        if self._started:
            return self
        reason = netns_unavailable_reason()
        if reason is not None:
            raise NetnsError(f"network namespaces unavailable: {reason}")
        self.link_backend = _resolve_backend(self._requested_backend)
        if not self._lock.try_acquire():
            raise NetnsError(f"prefix {self.prefix} is locked by another run")
        self._started = True
        _register_live(self, self._handle_signals)
        try:
            self._setup()
        except BaseException:
            with contextlib.suppress(CleanupError):
                self.close(keep_workdir=True)
            raise
        return self

    def _setup(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self._shaper = _NetemShaper(self) if self.link_backend == "netem" else _NfqueueShaper(self)
        alloc_lock = _RunLock(_state_dir() / "subnet-alloc.lock")
        alloc_lock.acquire()
        try:
            self.subnet = _pick_subnet(self._requested_subnet)
            if FIRST_HOST_OFFSET + len(self._names) >= self.subnet.num_addresses - 1:
                raise ValueError(f"subnet {self.subnet} is too small for {len(self._names)} hosts")
            self.client_ip = str(self.subnet.network_address + 1)
            self._create_switch()
        finally:
            alloc_lock.release(unlink=False)
        self.hosts = tuple(self._create_host(i, name) for i, name in enumerate(self._names))
        self._create_rule_table()
        logger.info("network %r up (workdir %s)", self, self.workdir)

    def _create_switch(self) -> None:
        names = {
            "sw": self.switch_netns,
            "br": self.bridge,
            "cl": self.client_link,
            "up": f"{self.prefix}-up",
            "addr": f"{self.client_ip}/{self.subnet.prefixlen}",
        }
        for template in (
            "ip netns add {sw}",
            "ip -n {sw} link set lo up",
            "ip -n {sw} link add {br} type bridge",
            "ip -n {sw} link set {br} addrgenmode none up",
            "ip link add {cl} type veth peer name {up} netns {sw}",
            "ip -n {sw} link set {up} addrgenmode none master {br} up",
            "ip addr add {addr} dev {cl}",
            "ip link set {cl} addrgenmode none up",
        ):
            _run(_cmd(template, **names))

    def _create_host(self, index: int, name: str) -> Host:
        ip = str(self.subnet.network_address + FIRST_HOST_OFFSET + index)
        host = Host(self, index, name, ip)
        names = {
            "ns": host.netns,
            "sw": self.switch_netns,
            "br": self.bridge,
            "port": host.switch_port,
            "eth": host.ifname,
            "addr": f"{ip}/{self.subnet.prefixlen}",
        }
        for template in (
            "ip netns add {ns}",
            "ip link add {port} netns {sw} type veth peer name {eth} netns {ns}",
            "ip -n {sw} link set {port} addrgenmode none master {br} up",
            "ip -n {ns} link set lo up",
            "ip -n {ns} addr add {addr} dev {eth}",
            "ip -n {ns} link set {eth} addrgenmode none up",
        ):
            _run(_cmd(template, **names))
        return host

    def _create_rule_table(self) -> None:
        _nft(
            self.switch_netns,
            f"add table bridge {self.prefix}\n"
            f"add chain bridge {self.prefix} forward "
            "{ type filter hook forward priority 0; policy accept; }\n",
        )

    def close(self, *, keep_workdir: bool = False) -> None:
        """Tear everything down (idempotent); raise CleanupError if anything is left."""
        if self._closed or not self._started:
            self._closed = True
            return
        self._closed = True
        with _signals_deferred():
            errors = self._teardown()
            _unregister_live(self)
        if self.workdir != Path() and self.workdir.is_dir():
            if keep_workdir and any(self.workdir.iterdir()):
                logger.warning("network %s: logs kept in %s", self.prefix, self.workdir)
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            _raise_cleanup_errors(f"network {self.prefix}", errors)

    def _teardown(self) -> list[str]:
        errors: list[str] = []
        for proc in self._processes:
            _attempt(errors, f"kill {proc!r}", proc.kill)
        if self._shaper is not None:
            _attempt(errors, "stop link shaping", self._shaper.close)
        errors += _destroy_prefix(self.prefix)
        remaining = leftovers(self.prefix, include_lock_files=False)
        if remaining:
            errors.append(f"still present after teardown: {remaining}")
        self._lock.release(unlink=True)
        return errors

    # -- hosts & processes ---------------------------------------------------------

    def host(self, ref: Host | str | int) -> Host:
        """Look a host up by object, name or index."""
        if isinstance(ref, Host):
            if ref.network is not self:
                raise ValueError(f"{ref!r} belongs to another network")
            return ref
        if isinstance(ref, int):
            return self.hosts[ref]
        for host in self.hosts:
            if host.name == ref:
                return host
        raise KeyError(f"no host named {ref!r} in {self!r}")

    def __getitem__(self, ref: str | int) -> Host:
        return self.host(ref)

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)

    def _require_live(self) -> None:
        if not self._started or self._closed:
            raise NetnsError(f"{self!r} is not running (use it inside `with`)")

    def _spawn(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None,
        log_path: str | os.PathLike[str] | None,
        cwd: str | os.PathLike[str] | None,
    ) -> HostProcess:
        self._require_live()
        path = (
            Path(log_path)
            if log_path is not None
            else self.workdir / f"{host.name}-{len(self._processes)}.log"
        )
        proc = HostProcess(host, argv, env=env, log_path=path, cwd=cwd)
        self._processes.append(proc)
        return proc

    # -- partitions ----------------------------------------------------------------

    def _indices(self, refs: Iterable[Host | str | int]) -> list[int]:
        return [self.host(r).index for r in refs]

    def partition(self, groups: Sequence[Iterable[Host | str | int]]) -> None:
        """Block all traffic between hosts of different groups (both directions).

        Hosts in no group are not affected.  The root client reaches everyone.
        """
        index_groups = [self._indices(g) for g in groups]
        seen: set[int] = set()
        for group in index_groups:
            if seen & set(group):
                raise ValueError("partition groups must be disjoint")
            seen |= set(group)
        pairs = {
            (a, b)
            for i, ga in enumerate(index_groups)
            for j, gb in enumerate(index_groups)
            if i != j
            for a in ga
            for b in gb
        }
        self._block(pairs)

    def partition_one_way(
        self,
        sources: Iterable[Host | str | int],
        destinations: Iterable[Host | str | int],
    ) -> None:
        """Drop packets from each source to each destination; the reverse still flows."""
        srcs, dsts = self._indices(sources), self._indices(destinations)
        self._block({(s, d) for s in srcs for d in dsts if s != d})

    def isolate(self, host: Host | str | int) -> None:
        """Cut ``host`` off from every other host (the root client still reaches it)."""
        target = self.host(host).index
        others = [h.index for h in self.hosts if h.index != target]
        self._block({(target, o) for o in others} | {(o, target) for o in others})

    def heal(self) -> None:
        """Remove every partition rule."""
        self._require_live()
        self._blocked.clear()
        self._apply_partition_rules()

    def blocked_pairs(self) -> frozenset[tuple[str, str]]:
        """Currently blocked (source, destination) host-name pairs."""
        return frozenset((self.hosts[a].name, self.hosts[b].name) for a, b in self._blocked)

    def _block(self, pairs: set[tuple[int, int]]) -> None:
        self._require_live()
        self._blocked |= pairs
        self._apply_partition_rules()

    def _apply_partition_rules(self) -> None:
        table = f"bridge {self.prefix}"
        lines = [f"flush chain {table} forward"]
        for src, dst in sorted(self._blocked):
            a, b = self.hosts[src], self.hosts[dst]
            lines.append(
                f'add rule {table} forward iifname "{a.switch_port}" '
                f'oifname "{b.switch_port}" counter drop '
                f'comment "{self.prefix} {a.name}->{b.name}"'
            )
        _nft(self.switch_netns, "\n".join(lines) + "\n")

    # -- link impairment ---------------------------------------------------------------

    def set_link(
        self,
        host: Host | str | int,
        *,
        delay_ms: float = 0.0,
        jitter_ms: float = 0.0,
        loss_percent: float = 0.0,
        reorder_percent: float = 0.0,
        duplicate_percent: float = 0.0,
        include_client: bool = False,
    ) -> None:
        """Impair IPv4 packets ``host`` sends to other hosts (replaces earlier settings).

        Traffic to the root client is impaired too only if ``include_client``.
        """
        spec = LinkSpec(
            delay_ms, jitter_ms, loss_percent, reorder_percent, duplicate_percent, include_client
        )
        spec.validate()
        self._require_live()
        assert self._shaper is not None
        self._shaper.apply(self.host(host), spec)

    def set_all_links(self, **kwargs: Any) -> None:
        """``set_link`` with the same settings on every host."""
        for host in self.hosts:
            self.set_link(host, **kwargs)

    def clear_link(self, host: Host | str | int) -> None:
        """Remove impairment from ``host`` (no-op if none)."""
        self._require_live()
        assert self._shaper is not None
        self._shaper.clear(self.host(host))

    def clear_all_links(self) -> None:
        for host in self.hosts:
            self.clear_link(host)


# --------------------------------------------------------------------------- availability


_BACKENDS: Final[tuple[LinkBackend, ...]] = ("netem", "nfqueue")  # order of preference


def _resolve_backend(requested: str) -> LinkBackend:
    if requested == "auto":
        requested = os.environ.get(_LINK_BACKEND_ENV, "auto")
    available = _probe().backends
    if requested == "auto" and available:
        return available[0]
    for backend in available:
        if backend == requested:
            return backend
    if requested not in (*_BACKENDS, "auto"):
        raise ValueError(f"unknown link backend {requested!r}")
    raise NetnsError(f"link backend {requested!r} unavailable here: {_probe().notes}")


@dataclass(frozen=True)
class _ProbeResult:
    reason: str | None
    backends: tuple[LinkBackend, ...]
    notes: str


_REQUIRED_TOOLS: Final = {"ip": "iproute2", "tc": "iproute2", "nft": "nftables"}


def _check_static() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"network namespaces need Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return f"not root (euid={os.geteuid()}); the netns harness needs root"
    for tool, package in _REQUIRED_TOOLS.items():
        if shutil.which(tool) is None:
            return f"`{tool}` not found on PATH (install the Debian package {package})"
    return None


def _probe_netns(ns: str) -> None:
    """Check namespaces, veth, bridge and bridge-family nftables in ``ns``."""
    steps: list[tuple[list[str], str | None]] = [
        (["ip", "netns", "add", ns], None),
        (["ip", "-n", ns, "link", "add", "pv0", "type", "veth", "peer", "name", "pv1"], None),
        (["ip", "-n", ns, "link", "add", "pbr", "type", "bridge"], None),
        (["ip", "-n", ns, "link", "set", "pv0", "master", "pbr"], None),
        (["ip", "-n", ns, "link", "set", "pv0", "up"], None),
        (["ip", "-n", ns, "link", "set", "pv1", "up"], None),
        (
            ["ip", "netns", "exec", ns, "nft", "-f", "-"],
            "add table bridge probe\nadd chain bridge probe forward "
            "{ type filter hook forward priority 0; }\n"
            'add rule bridge probe forward iifname "pv0" oifname "pv1" drop\n',
        ),
    ]
    for argv, script in steps:
        _run(argv, input_text=script, timeout_s=10)


def _probe_netem(ns: str) -> str | None:
    result = _run(
        _cmd("tc -n {ns} qdisc add dev pv1 root handle 1: prio bands 2", ns=ns),
        check=False,
        timeout_s=10,
    )
    if result.returncode == 0:
        result = _run(
            _cmd("tc -n {ns} qdisc add dev pv1 parent 1:2 netem delay 1ms", ns=ns),
            check=False,
            timeout_s=10,
        )
    _run(_cmd("tc -n {ns} qdisc del dev pv1 root", ns=ns), check=False, timeout_s=10)
    return None if result.returncode == 0 else f"tc prio/netem: {result.stderr.strip()}"


def _probe_nfqueue(ns: str) -> str | None:
    if shutil.which("iptables") is None:
        return "`iptables` not found on PATH (install the Debian package iptables)"
    try:
        _iptables(
            ns, "-A", "OUTPUT", "-o", "pv1", "-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass"
        )
        _run(
            ["ip", "netns", "exec", ns, "nft", "-f", "-"],
            timeout_s=10,
            input_text="add table ip probe\nadd chain ip probe out "
            "{ type filter hook output priority -10; }\n"
            'add rule ip probe out numgen random mod 100 < 1 dup to ip daddr device "pv1"\n',
        )
        emulator = [sys.executable, "-I", _THIS_FILE, "link-emulator", "--probe"]
        _run(["ip", "netns", "exec", ns, *emulator], timeout_s=15)
    except NetnsError as exc:
        return str(exc)
    return None


@functools.cache
def _probe() -> _ProbeResult:
    reason = _check_static()
    if reason is not None:
        return _ProbeResult(reason, (), reason)
    prefix = f"{PREFIX_STEM}{secrets.token_hex(3)}"
    lock = _RunLock(_lock_path(prefix))
    try:
        lock.acquire()
    except OSError as exc:
        return _ProbeResult(f"cannot create lock file under {STATE_DIR}: {exc}", (), "")
    ns = f"{prefix}-probe"
    try:
        _probe_netns(ns)
        notes: dict[LinkBackend, str | None] = {
            "netem": _probe_netem(ns),
            "nfqueue": _probe_nfqueue(ns),
        }
    except NetnsError as exc:
        return _ProbeResult(f"namespace/bridge/nftables setup failed: {exc}", (), "")
    finally:
        errors = _destroy_prefix(prefix)
        lock.release(unlink=True)
        if errors:
            logger.error("netns probe cleanup failed: %s", errors)
    backends = tuple(name for name in _BACKENDS if notes[name] is None)
    summary = "; ".join(f"{k}: {v or 'ok'}" for k, v in notes.items())
    if not backends:
        return _ProbeResult(f"no link-impairment backend works ({summary})", (), summary)
    return _ProbeResult(None, backends, summary)


def netns_unavailable_reason() -> str | None:
    """Why the harness cannot run here, or None if it can (probed once, cached)."""
    return _probe().reason


def available_link_backend() -> LinkBackend | None:
    """The backend ``link_backend="auto"`` picks here (netem preferred), or None."""
    backends = _probe().backends
    return backends[0] if backends else None


# --------------------------------------------------------------------------- link emulator
# Runs as a separate process inside a host namespace (started by _NfqueueShaper).
# Speaks nfnetlink_queue (linux/netfilter/nfnetlink_queue.h) directly.

_NETLINK_NETFILTER: Final = 12
_SO_RCVBUFFORCE: Final = 33
_NLMSG_ERROR: Final = 2
_NLM_F_REQUEST: Final = 1
_NLM_F_ACK: Final = 4
_NFNL_SUBSYS_QUEUE: Final = 3
_NFQNL_MSG_PACKET: Final = 0
_NFQNL_MSG_VERDICT: Final = 1
_NFQNL_MSG_CONFIG: Final = 2
_NFQA_PACKET_HDR: Final = 1
_NFQA_VERDICT_HDR: Final = 2
_NFQA_CFG_CMD: Final = 1
_NFQA_CFG_PARAMS: Final = 2
_NFQA_CFG_QUEUE_MAXLEN: Final = 3
_NFQNL_CFG_CMD_BIND: Final = 1
_NFQNL_COPY_META: Final = 1
_NF_DROP: Final = 0
_NF_ACCEPT: Final = 1
_NLA_TYPE_MASK: Final = 0x3FFF


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _nlattr(attr_type: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, attr_type) + payload + b"\0" * (_align4(length) - length)


def _iter_nlattrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + 4 <= len(data):
        length, attr_type = struct.unpack_from("=HH", data, offset)
        if length < 4:
            return
        yield attr_type & _NLA_TYPE_MASK, data[offset + 4 : offset + length]
        offset += _align4(length)


class _NfQueue:
    """Minimal nfnetlink_queue client: bind a queue, read packet ids, send verdicts."""

    def __init__(self, queue_num: int) -> None:
        self.queue_num = queue_num
        self._seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 8 << 20)
        self.sock.bind((0, 0))

    def _message(self, msg_type: int, attrs: bytes, flags: int) -> tuple[int, bytes]:
        self._seq += 1
        body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack("!H", self.queue_num) + attrs
        header = struct.pack(
            "=IHHII",
            16 + len(body),
            (_NFNL_SUBSYS_QUEUE << 8) | msg_type,
            _NLM_F_REQUEST | flags,
            self._seq,
            0,
        )
        return self._seq, header + body

    def _request(self, msg_type: int, attrs: bytes) -> None:
        seq, message = self._message(msg_type, attrs, _NLM_F_ACK)
        self.sock.send(message)
        while True:
            data = self.sock.recv(65536)
            for nl_type, nl_seq, payload in _iter_nlmsgs(data):
                if nl_type == _NLMSG_ERROR and nl_seq == seq:
                    (error,) = struct.unpack_from("=i", payload)
                    if error:
                        raise OSError(-error, f"nfqueue config: {os.strerror(-error)}")
                    return

    def bind(self, maxlen: int = 10000) -> None:
        self._request(
            _NFQNL_MSG_CONFIG,
            _nlattr(_NFQA_CFG_CMD, struct.pack("!BBH", _NFQNL_CFG_CMD_BIND, 0, 0)),
        )
        self._request(
            _NFQNL_MSG_CONFIG, _nlattr(_NFQA_CFG_PARAMS, struct.pack("!IB", 0, _NFQNL_COPY_META))
        )
        self._request(_NFQNL_MSG_CONFIG, _nlattr(_NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen)))

    def verdict(self, packet_id: int, verdict: int) -> None:
        attrs = _nlattr(_NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id))
        self.sock.send(self._message(_NFQNL_MSG_VERDICT, attrs, 0)[1])

    def receive_ids(self) -> list[int]:
        """Packet ids of every queued-packet message currently readable."""
        ids: list[int] = []
        while True:
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return ids
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                print("link-emulator: netlink ENOBUFS, messages lost", file=sys.stderr)
                continue
            ids += _packet_ids(data)


def _iter_nlmsgs(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    offset = 0
    while offset + 16 <= len(data):
        length, nl_type, _flags, seq, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16:
            return
        yield nl_type, seq, data[offset + 16 : offset + length]
        offset += _align4(length)


def _packet_ids(data: bytes) -> list[int]:
    ids: list[int] = []
    for nl_type, _seq, payload in _iter_nlmsgs(data):
        if nl_type == _NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", payload)
            if error:
                print(f"link-emulator: netlink error {os.strerror(-error)}", file=sys.stderr)
        elif nl_type == (_NFNL_SUBSYS_QUEUE << 8) | _NFQNL_MSG_PACKET:
            for attr_type, value in _iter_nlattrs(payload[4:]):
                if attr_type == _NFQA_PACKET_HDR:
                    ids.append(struct.unpack_from("!I", value)[0])
    return ids


class _Emulator:
    """Decides each packet's fate and releases held packets when due."""

    def __init__(self, queue: _NfQueue, args: argparse.Namespace) -> None:
        self.queue = queue
        self.delay_s = args.delay_ms / 1000.0
        self.jitter_s = args.jitter_ms / 1000.0
        self.loss = args.loss_percent / 100.0
        self.reorder = args.reorder_percent / 100.0
        self.rng = random.Random(args.seed)
        self.held: list[tuple[float, int, int]] = []  # (due, arrival#, packet id)
        self.arrivals = 0

    def on_packet(self, packet_id: int, now: float) -> None:
        self.arrivals += 1
        if self.loss and self.rng.random() < self.loss:
            self.queue.verdict(packet_id, _NF_DROP)
        elif self.reorder and self.rng.random() < self.reorder:
            self.queue.verdict(packet_id, _NF_ACCEPT)
        else:
            jitter = self.rng.uniform(-self.jitter_s, self.jitter_s) if self.jitter_s else 0.0
            due = now + max(0.0, self.delay_s + jitter)
            heapq.heappush(self.held, (due, self.arrivals, packet_id))

    def release_due(self, now: float) -> None:
        while self.held and self.held[0][0] <= now:
            self.queue.verdict(heapq.heappop(self.held)[2], _NF_ACCEPT)

    def release_all(self) -> None:
        while self.held:
            self.queue.verdict(heapq.heappop(self.held)[2], _NF_ACCEPT)

    def timeout(self, now: float) -> float:
        return max(0.0, self.held[0][0] - now) if self.held else 1.0


def _link_emulator_main(args: argparse.Namespace) -> int:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    queue = _NfQueue(args.queue)
    queue.bind()
    if args.probe:
        return 0
    print("ready", flush=True)
    emulator = _Emulator(queue, args)
    while True:
        readable, _, _ = select.select(
            [queue.sock.fileno(), wake_r], [], [], emulator.timeout(time.monotonic())
        )
        if wake_r in readable:
            break
        if queue.sock.fileno() in readable:
            now = time.monotonic()
            for packet_id in queue.receive_ids():
                emulator.on_packet(packet_id, now)
        emulator.release_due(time.monotonic())
    emulator.release_all()
    return 0


# --------------------------------------------------------------------------- CLI


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m causalkv.testing.netns")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="print why the harness cannot run here (exit 1) or ok")
    commands.add_parser("sweep", help="remove leftovers of crashed runs")
    emu = commands.add_parser("link-emulator", help="internal: NFQUEUE link emulator")
    emu.add_argument("--queue", type=int, default=0)
    emu.add_argument("--delay-ms", type=float, default=0.0)
    emu.add_argument("--jitter-ms", type=float, default=0.0)
    emu.add_argument("--loss-percent", type=float, default=0.0)
    emu.add_argument("--reorder-percent", type=float, default=0.0)
    emu.add_argument("--seed", type=int, default=None)
    emu.add_argument("--probe", action="store_true", help="bind the queue and exit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.command == "link-emulator":
        return _link_emulator_main(args)
    if args.command == "sweep":
        logging.basicConfig(level=logging.INFO)
        for item in sweep_leftovers():
            print(f"removed {item}")
        return 0
    reason = netns_unavailable_reason()
    if reason is not None:
        print(f"unavailable: {reason}")
        return 1
    print(f"ok: link backends {_probe().notes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
