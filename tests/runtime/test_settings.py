"""SPEC §2: settings from flags and environment variables, the container
conventions of both seeds, and exit status 1 with a one-line message naming the
setting when one is malformed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from causalkv.runtime.settings import SettingsError, load_settings


def test_defaults() -> None:
    settings = load_settings({}, {})
    assert (settings.listen_host, settings.listen_port) == ("0.0.0.0", 8081)
    assert settings.node_id == "0.0.0.0-8081"
    assert settings.data_dir == Path("causalkv-data/0.0.0.0-8081")
    assert settings.storage == "sqlite" and settings.replica.causal_wait_s == 20


def test_flags_beat_environment() -> None:
    settings = load_settings(
        {"listen": "127.0.0.1:9000", "node_id": "7"},
        {"CAUSALKV_LISTEN": "0.0.0.0:1", "NODE_IDENTIFIER": "3"},
    )
    assert settings.listen == "127.0.0.1:9000" and settings.node_id == "7"


def test_sharded_container_convention() -> None:
    settings = load_settings({}, {"NODE_IDENTIFIER": "4"})
    assert settings.node_id == "4" and settings.listen_port == 8081


def test_synckv_container_convention() -> None:
    settings = load_settings({}, {"NODE_ID": "A"})
    assert settings.node_id == "A" and settings.listen_port == 8080
    with_address = load_settings({}, {"NODE_ID": "A", "ADDRESS": "10.10.0.2:8090"})
    assert with_address.listen == "0.0.0.0:8090"
    assert with_address.advertise_address == "10.10.0.2:8090"


def test_port_variable() -> None:
    assert load_settings({}, {"PORT": "9123"}).listen_port == 9123


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"ADDRESS": "nonsense"}, "ADDRESS"),
        ({"ADDRESS": "10.0.0.1:99999"}, "ADDRESS"),
        ({"CAUSALKV_LISTEN": "host"}, "CAUSALKV_LISTEN"),
        ({"PORT": "eighty"}, "PORT"),
        ({"NODE_IDENTIFIER": "has space"}, "NODE_IDENTIFIER"),
        ({"CAUSALKV_STORAGE": "floppy"}, "CAUSALKV_STORAGE"),
        ({"CAUSALKV_CAUSAL_WAIT_S": "-1"}, "CAUSALKV_CAUSAL_WAIT_S"),
        ({"CAUSALKV_MODE": "synckv"}, "ADDRESS"),
        ({"CAUSALKV_CLUSTER_SECRET": "short"}, "CAUSALKV_CLUSTER_SECRET"),
        ({"CAUSALKV_CONCURRENT_REQUESTS_MAX": "0"}, "CAUSALKV_CONCURRENT_REQUESTS_MAX"),
        ({"CAUSALKV_TLS_CERTIFICATE": "/nonexistent.pem"}, "CAUSALKV_TLS"),
    ],
)
def test_malformed_settings_name_the_setting(environ: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings({}, environ)


def test_the_process_exits_1_with_one_line(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("CAUSALKV_", "NODE_"))}
    environment["ADDRESS"] = "not-an-address"
    completed = subprocess.run(
        [sys.executable, "-m", "causalkv", "serve"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert completed.returncode == 1
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and "ADDRESS" in lines[0], completed.stderr
