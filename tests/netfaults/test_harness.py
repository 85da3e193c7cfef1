"""Real (unmocked) tests of the network-namespace fault-injection harness.

Every fault is proven with real packets between real processes: a small asyncio
TCP+UDP server runs on each test host, and probes run either in the root
namespace (the "client") or inside a host namespace.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from causalkv.testing import netns as netns_mod
from causalkv.testing import netns_pytest
from causalkv.testing.netns import (
    Host,
    HostProcess,
    Network,
    available_link_backend,
    leftovers,
    sweep_leftovers,
)
from causalkv.testing.netns_pytest import network_factory_fixture, network_fixture

pytestmark = pytest.mark.netns

PORT = 7000

# TCP: echoes lines, answers "stats" with per-source UDP datagram counts (JSON).
# UDP: counts datagrams per source address, echoes those starting with b"echo".
SERVER = r"""
import asyncio, json, sys
port = int(sys.argv[1])
counts = {}

class Udp(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport
    def datagram_received(self, data, addr):
        counts[addr[0]] = counts.get(addr[0], 0) + 1
        if data.startswith(b"echo"):
            self.transport.sendto(data, addr)

async def handle(reader, writer):
    while line := await reader.readline():
        writer.write(json.dumps(counts).encode() + b"\n" if line.strip() == b"stats" else line)
        await writer.drain()
    writer.close()

async def main():
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Udp, local_addr=("0.0.0.0", port))
    server = await asyncio.start_server(handle, "0.0.0.0", port)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""

# probe MODE TARGET PORT [ARG...] -> one JSON object on stdout
PROBE = r"""
import json, socket, sys, time
mode, target, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
args = [float(a) for a in sys.argv[4:]]

def tcp(timeout):
    t0 = time.monotonic()
    try:
        with socket.create_connection((target, port), timeout=timeout) as s:
            connect_ms = (time.monotonic() - t0) * 1000
            s.sendall(b"ping\n")
            return {"ok": s.recv(100) == b"ping\n", "connect_ms": connect_ms}
    except OSError as exc:
        return {"ok": False, "error": repr(exc)}

def rtts(n):
    out = []
    for _ in range(int(n)):
        t0 = time.monotonic()
        with socket.create_connection((target, port), timeout=5):
            out.append((time.monotonic() - t0) * 1000)
    return {"rtts": out}

def udp(count, echo, wait):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(int(count)):
        s.sendto(b"%s %d" % (b"echo" if echo else b"noecho", i), (target, port))
        time.sleep(0.001)
    received, deadline = [], time.monotonic() + wait
    s.settimeout(0.05)
    while echo and time.monotonic() < deadline:
        try:
            received.append(int(s.recv(100).split()[1]))
        except socket.timeout:
            pass
    return {"sent": int(count), "received": received}

def stats(timeout):
    with socket.create_connection((target, port), timeout=timeout) as s:
        s.sendall(b"stats\n")
        return json.loads(s.makefile().readline())

result = {
    "tcp": lambda: tcp(*args),
    "rtts": lambda: rtts(*args),
    "udp_send": lambda: udp(args[0], False, 0),
    "udp_echo": lambda: udp(args[0], True, args[1]),
    "stats": lambda: stats(*args),
}[mode]()
print(json.dumps(result))
"""


def probe(where: Host | None, mode: str, target: str, port: int, *args: float) -> Any:
    """Run PROBE in the root namespace (where=None) or inside a host."""
    argv = [sys.executable, "-c", PROBE, mode, target, str(port), *map(str, args)]
    if where is None:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    else:
        out = where.run(argv, timeout_s=30).stdout
    return json.loads(out)


def tcp_ok(where: Host | None, target: Host, timeout: float = 0.6) -> bool:
    return bool(probe(where, "tcp", target.ip, PORT, timeout)["ok"])


def udp_counts(target: Host) -> dict[str, int]:
    """Datagrams received so far by target's server, per source address (asked via TCP)."""
    return dict(probe(None, "stats", target.ip, PORT, 2.0))


def start_server(host: Host, port: int = PORT) -> HostProcess:
    proc = host.spawn([sys.executable, "-c", SERVER, str(port)])
    proc.wait_for_port(port, timeout_s=15)
    return proc


def alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_dead(pids: list[int], timeout_s: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (living := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return living


def system_state() -> str:
    """Everything an observer would look at: namespaces, links, rules."""
    outputs = [
        subprocess.run(argv, capture_output=True, text=True, check=True, timeout=10).stdout
        for argv in (
            ["ip", "netns", "list"],
            ["ip", "-o", "link", "show"],
            ["nft", "list", "ruleset"],
            ["iptables-save"],
        )
    ]
    return "\n".join(outputs)


def assert_nothing_left(prefix: str) -> None:
    assert leftovers(prefix) == []
    assert prefix not in system_state()


def netns_pids(netns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


# --------------------------------------------------------------------------- fixtures

net = network_fixture(3, scope="module")
make_network = network_factory_fixture()


@pytest.fixture(scope="module")
def servers(net: Network) -> list[HostProcess]:
    return [start_server(host) for host in net.hosts]


@pytest.fixture
def clean(net: Network, servers: list[HostProcess]) -> Iterator[Network]:
    """The shared network with servers up, and no fault left after the test."""
    yield net
    net.heal()
    net.clear_all_links()
    assert all(s.is_running() for s in servers)


# --------------------------------------------------------------------------- connectivity


def test_topology_and_reachability(clean: Network) -> None:
    assert len({h.ip for h in clean.hosts} | {clean.client_ip}) == 4
    assert all(ipaddr_in(h.ip, clean) for h in clean.hosts)
    for target in clean.hosts:
        assert tcp_ok(None, target), f"client cannot reach {target}"
    for src in clean.hosts:
        for dst in clean.hosts:
            if src is not dst:
                assert tcp_ok(src, dst), f"{src} cannot reach {dst}"


def ipaddr_in(ip: str, network: Network) -> bool:
    return ipaddress.IPv4Address(ip) in network.subnet


def test_spawned_pid_is_the_program_itself(clean: Network, servers: list[HostProcess]) -> None:
    with open(f"/proc/{servers[0].pid}/cmdline", "rb") as f:
        assert b"asyncio" in f.read()  # not `ip netns exec`
    assert servers[0].pid in netns_pids(clean.hosts[0].netns)


# --------------------------------------------------------------------------- partitions


def test_full_partition_blocks_between_groups_and_heal_restores(clean: Network) -> None:
    h0, h1, h2 = clean.hosts
    clean.partition([[h0], [h1, h2]])
    assert clean.blocked_pairs() == {("h0", "h1"), ("h1", "h0"), ("h0", "h2"), ("h2", "h0")}
    assert not tcp_ok(h0, h1)
    assert not tcp_ok(h2, h0)
    assert tcp_ok(h1, h2) and tcp_ok(h2, h1)
    assert all(tcp_ok(None, h) for h in clean.hosts), "root client must reach every host"
    clean.heal()
    assert clean.blocked_pairs() == frozenset()
    assert tcp_ok(h0, h1) and tcp_ok(h2, h0)


def test_isolate(clean: Network) -> None:
    h0, h1, h2 = clean.hosts
    clean.isolate("h2")
    assert not tcp_ok(h2, h0) and not tcp_ok(h1, h2)
    assert tcp_ok(h0, h1)
    assert tcp_ok(None, h2)


def test_one_way_partition_drops_exactly_one_direction(clean: Network) -> None:
    h0, h1, _ = clean.hosts
    before_h1, before_h0 = udp_counts(h1).get(h0.ip, 0), udp_counts(h0).get(h1.ip, 0)
    clean.partition_one_way([h0], [h1])
    probe(h0, "udp_send", h1.ip, PORT, 20)  # h0 -> h1: must all be dropped
    probe(h1, "udp_send", h0.ip, PORT, 20)  # h1 -> h0: must all arrive
    time.sleep(0.2)
    assert udp_counts(h1).get(h0.ip, 0) - before_h1 == 0
    assert udp_counts(h0).get(h1.ip, 0) - before_h0 == 20
    # TCP needs both directions, so it fails whichever side connects.
    assert not tcp_ok(h0, h1)
    assert not tcp_ok(h1, h0)
    clean.heal()
    probe(h0, "udp_send", h1.ip, PORT, 5)
    time.sleep(0.2)
    assert udp_counts(h1).get(h0.ip, 0) - before_h1 == 5


# --------------------------------------------------------------------------- link impairment


def min_rtt(where: Host | None, target: Host, n: int = 5) -> float:
    return float(min(probe(where, "rtts", target.ip, PORT, n)["rtts"]))


def test_delay_raises_rtt_between_hosts_not_client_by_default(clean: Network) -> None:
    h0, h1, _ = clean.hosts
    assert min_rtt(h0, h1) < 30
    clean.set_link(h1, delay_ms=80)
    assert min_rtt(h0, h1) >= 80  # h1's SYN-ACK is delayed
    assert min_rtt(h1, h0) >= 80  # h1's SYN is delayed
    assert min_rtt(None, h1) < 40, "client traffic is exempt unless include_client=True"
    clean.set_link(h1, delay_ms=80, include_client=True)
    assert min_rtt(None, h1) >= 80
    clean.clear_link(h1)
    assert min_rtt(h0, h1) < 30 and min_rtt(None, h1) < 30


def test_loss_drops_a_fraction(clean: Network) -> None:
    h0, h1, _ = clean.hosts
    clean.set_link(h0, loss_percent=50)
    got = probe(h0, "udp_echo", h1.ip, PORT, 300, 0.5)["received"]
    assert 0.25 * 300 < len(got) < 0.75 * 300
    clean.clear_link(h0)
    got = probe(h0, "udp_echo", h1.ip, PORT, 100, 0.3)["received"]
    assert len(got) == 100


def test_duplicate(clean: Network) -> None:
    h0, h1, _ = clean.hosts
    before = udp_counts(h1).get(h0.ip, 0)
    clean.set_link(h0, duplicate_percent=50)
    probe(h0, "udp_send", h1.ip, PORT, 200)
    time.sleep(0.2)
    assert 230 < udp_counts(h1).get(h0.ip, 0) - before < 370


def test_jitter_and_reorder_reorder_packets(clean: Network) -> None:
    h0, h1, _ = clean.hosts
    clean.set_link(h0, delay_ms=60, reorder_percent=30)
    got = probe(h0, "udp_echo", h1.ip, PORT, 100, 0.5)["received"]
    assert sorted(got) == list(range(100)) and got != sorted(got)
    clean.set_link(h0, delay_ms=40, jitter_ms=30)
    got = probe(h0, "udp_echo", h1.ip, PORT, 100, 0.5)["received"]
    assert sorted(got) == list(range(100)) and got != sorted(got)


def test_set_all_links(clean: Network) -> None:
    h0, h1, h2 = clean.hosts
    clean.set_all_links(delay_ms=30)
    assert min_rtt(h0, h1, 3) >= 60  # both directions delayed
    assert min_rtt(h2, h0, 3) >= 60
    clean.clear_all_links()
    assert min_rtt(h0, h1, 3) < 30


def test_link_spec_validation(clean: Network) -> None:
    with pytest.raises(ValueError, match="reorder"):
        clean.set_link("h0", reorder_percent=10)
    with pytest.raises(ValueError):
        clean.set_link("h0", loss_percent=101)


def test_netem_backend_when_kernel_has_it(make_network: Any) -> None:
    if available_link_backend() != "netem":
        pytest.skip(f"kernel lacks sch_netem ({netns_mod._probe().notes})")
    network = make_network(2, link_backend="netem")
    start_server(network.hosts[1])
    network.set_link(network.hosts[1], delay_ms=80)
    assert min_rtt(network.hosts[0], network.hosts[1], 3) >= 80
    assert min_rtt(None, network.hosts[1], 3) < 40


# --------------------------------------------------------------------------- processes


def test_pause_and_resume(clean: Network) -> None:
    h0, h1, _ = clean.hosts
    server = start_server(h0, PORT + 1)
    try:
        target = (h0.ip, PORT + 1)
        assert probe(None, "tcp", *target, 1.0)["ok"]
        server.pause()
        assert server.is_running()
        assert not probe(None, "tcp", *target, 0.5)["ok"]
        assert not probe(h1, "tcp", *target, 0.5)["ok"]
        server.resume()
        assert probe(None, "tcp", *target, 2.0)["ok"]
        assert probe(h1, "tcp", *target, 2.0)["ok"]
    finally:
        server.kill()


def test_kill_terminate_and_restart(clean: Network) -> None:
    h0, _, _ = clean.hosts
    server = start_server(h0, PORT + 2)
    first_pid = server.pid
    assert server.kill() == -signal.SIGKILL
    assert not server.is_running() and not alive(first_pid)
    result = probe(None, "tcp", h0.ip, PORT + 2, 1.0)
    assert not result["ok"] and "ConnectionRefused" in result["error"]
    server.restart()
    server.wait_for_port(PORT + 2)
    assert server.pid != first_pid and server.starts == 2
    assert probe(None, "tcp", h0.ip, PORT + 2, 1.0)["ok"]
    assert server.terminate(timeout_s=5) == -signal.SIGTERM
    assert "=== start #2" in server.read_log()


def test_terminate_escalates_to_sigkill(clean: Network) -> None:
    stubborn = clean.hosts[0].spawn(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, "
            "signal.SIG_IGN); print('r' * 3, flush=True); time.sleep(60)",
        ]
    )
    deadline = time.monotonic() + 10
    while "rrr" not in stubborn.read_log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stubborn.terminate(timeout_s=0.5) == -signal.SIGKILL


# --------------------------------------------------------------------------- cleanup


def test_teardown_after_exception_leaves_nothing(tmp_path: Any) -> None:
    netns_pytest.require_netns()
    with pytest.raises(RuntimeError, match="boom"), Network(2) as network:
        prefix = network.prefix
        sh = network.hosts[0].spawn(
            ["sh", "-c", "sleep 300 & sleep 300"], log_path=tmp_path / "sh.log"
        )
        network.set_link(network.hosts[1], delay_ms=5, duplicate_percent=1)
        network.partition([[0], [1]])
        time.sleep(0.1)
        pids = netns_pids(network.hosts[0].netns) + netns_pids(network.hosts[1].netns)
        assert sh.pid in pids and len(pids) >= 3  # sh, its 2 sleeps, the link emulator
        assert prefix in system_state()
        raise RuntimeError("boom")
    assert_nothing_left(prefix)
    assert wait_dead(pids) == []
    assert network.workdir.is_dir(), "logs are kept when the block raised"
    network.close()  # idempotent
    shutil.rmtree(network.workdir)


def test_teardown_after_normal_exit_leaves_nothing() -> None:
    netns_pytest.require_netns()
    with Network(1) as network:
        prefix = network.prefix
        workdir = network.workdir
        start_server(network.hosts[0])
    assert_nothing_left(prefix)
    assert not workdir.exists()


CHILD = r"""
import json, signal, sys, time
# Under nohup (or any parent that ignores SIGHUP) the harness rightly leaves an
# ignored signal alone; this test is about a process that would die of it.
for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
    if signal.getsignal(sig) == signal.SIG_IGN:
        signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
from causalkv.testing.netns import Network
with Network(2) as net:
    proc = net.hosts[0].spawn(["sleep", "300"])
    net.set_link(net.hosts[1], delay_ms=10)
    net.partition([[0], [1]])
    print(json.dumps({"prefix": net.prefix}), flush=True)
    time.sleep(60)
"""


def start_child_run() -> tuple[subprocess.Popen[str], str, list[int]]:
    """A separate Python process holding a live Network; returns it, prefix, pids inside."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], 20)
    line = child.stdout.readline() if ready else ""
    if not line:
        child.kill()
        _, err = child.communicate()
        pytest.fail(f"child run did not start: {err}")
    prefix = json.loads(line)["prefix"]
    pids = netns_pids(f"{prefix}-h0") + netns_pids(f"{prefix}-h1")
    assert len(pids) == 2  # sleep + link emulator
    return child, prefix, pids


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: signal.Signals(s).name
)
def test_signal_to_harness_process_cleans_up(sig: int) -> None:
    netns_pytest.require_netns()
    child, prefix, pids = start_child_run()
    child.send_signal(sig)
    try:
        _, err = child.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise
    assert child.returncode != 0
    assert "Traceback" in err or child.returncode < 0
    assert_nothing_left(prefix)
    assert wait_dead(pids) == []


def test_sigkilled_run_children_die_and_sweep_removes_leftovers() -> None:
    netns_pytest.require_netns()
    child, prefix, pids = start_child_run()
    child.kill()
    child.communicate(timeout=10)
    assert wait_dead(pids) == [], "PR_SET_PDEATHSIG must kill spawned processes"
    assert f"netns {prefix}-h0" in leftovers(prefix)
    removed = sweep_leftovers()
    assert f"netns {prefix}-sw" in removed and f"link {prefix}-cl" in removed
    assert any(item.startswith(f"workdir {tempfile.gettempdir()}/{prefix}-") for item in removed)
    assert_nothing_left(prefix)


def test_sweep_removes_deliberately_leaked_namespace(clean: Network) -> None:
    fake = f"ckvn{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", f"{fake}-h0"], check=True)
    subprocess.run(
        [
            "ip",
            "link",
            "add",
            f"{fake}-cl",
            "type",
            "veth",
            "peer",
            "name",
            "x",
            "netns",
            f"{fake}-h0",
        ],
        check=True,
    )
    squatter = subprocess.Popen(["ip", "netns", "exec", f"{fake}-h0", "sleep", "300"])
    try:
        deadline = time.monotonic() + 5
        while not netns_pids(f"{fake}-h0") and time.monotonic() < deadline:
            time.sleep(0.02)
        removed = sweep_leftovers()
        assert f"netns {fake}-h0" in removed and f"link {fake}-cl" in removed
        assert squatter.wait(timeout=5) == -signal.SIGKILL
    finally:
        squatter.kill()
        squatter.wait()
    assert_nothing_left(fake)
    # the live shared network was left alone
    assert f"netns {clean.switch_netns}" in leftovers(clean.prefix)
    assert tcp_ok(clean.hosts[0], clean.hosts[1])


# --------------------------------------------------------------------------- availability


def test_unavailable_reason_for_non_root() -> None:
    if os.geteuid() != 0:
        reason = netns_mod.netns_unavailable_reason()
        assert reason is not None and reason.startswith("not root")
        return
    code = "from causalkv.testing.netns import netns_unavailable_reason as r; print(r())"
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("not root (euid=65534)")


def test_require_netns_skips_or_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns_pytest, "netns_unavailable_reason", lambda: "no `ip` here")
    monkeypatch.delenv(netns_pytest.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no `ip` here"):
        netns_pytest.require_netns()
    monkeypatch.setenv(netns_pytest.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=r"CAUSALKV_REQUIRE_NETNS=1 .*no `ip` here"):
        netns_pytest.require_netns()
    monkeypatch.setattr(netns_pytest, "netns_unavailable_reason", lambda: None)
    netns_pytest.require_netns()  # available: neither skips nor fails
