"""The dashboard in a real browser (headless Chromium driven by Playwright).

It loads from one node of a 6-node cluster, shows every node and shard, finds a
key with the key browser, and shows a killed node as down within a few seconds.
It saves the screenshot used by the README and docs (``docs/images/dashboard.png``).

Needs the ``playwright`` Python package (its bundled driver; no browser is
downloaded) and Debian's ``chromium``. Without them the test is skipped, with the
reason, unless ``CAUSALKV_REQUIRE_BROWSER=1`` (CI), where it fails instead.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from causalkv.local_cluster import LocalCluster
from tests.integration import http
from tests.observability.conftest import key_in_shard, start_cluster

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "dashboard.png"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str | None:
    configured = os.environ.get("CAUSALKV_CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CAUSALKV_REQUIRE_BROWSER") == "1":
        pytest.fail(f"CAUSALKV_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def chromium() -> str:
    path = _chromium()
    if path is None:
        _unavailable("chromium is not installed (Debian: apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the playwright Python package is not installed")
    return path


@pytest.fixture
def browser_cluster(chromium: str, tmp_path: Path) -> Iterator[LocalCluster]:
    cluster = start_cluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()


class Load(threading.Thread):
    """A light, steady client load, so the charts have something to show."""

    def __init__(self, addresses: list[str]) -> None:
        super().__init__(daemon=True)
        self.addresses = addresses
        self.stop_event = threading.Event()

    def run(self) -> None:
        rng = random.Random(7)
        metadata: object = {}
        while not self.stop_event.is_set():
            address = rng.choice(self.addresses)
            key = f"user:{rng.randrange(400)}"
            try:
                if rng.random() < 0.4:
                    response = http.put(address, key, f"profile-{rng.randrange(10**6)}", metadata)
                else:
                    response = http.get(address, key, metadata)
            except OSError:  # the node killed on purpose
                time.sleep(0.01)
                continue
            if response.status in (200, 404):
                metadata = response.body["causal-metadata"]
            time.sleep(0.01)


def test_dashboard_shows_the_cluster_finds_a_key_and_a_node_going_down(
    chromium: str, browser_cluster: LocalCluster
) -> None:
    from playwright.sync_api import sync_playwright

    cluster = browser_cluster
    nodes = cluster.nodes
    key = key_in_shard("s2", ["s1", "s2"], "user:alice")
    assert http.put(nodes[0].address, key, "alice@example.org").status == 200
    for index in range(40):
        assert http.put(nodes[index % 6].address, f"user:{index}", f"profile-{index}").status == 200
    victim = nodes[5]
    load = Load([n.address for n in nodes])
    load.start()
    profile = tempfile.mkdtemp(prefix="causalkv-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=chromium,
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1440, "height": 900},
                bypass_csp=True,  # the page forbids eval(); the test's probes need it
            )
            try:
                page = context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.goto(f"{nodes[0].url}/dashboard", wait_until="load")
                _check_cluster_shown(page, cluster)
                _check_key_browser(page, key)
                time.sleep(8)  # let the charts fill in before the picture
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOT), full_page=True)
                killed_at = time.monotonic()
                victim.kill()
                page.wait_for_selector(
                    f'#nodes-table tr[data-node="{victim.address}"][data-state="down"]',
                    timeout=8000,
                )
                assert time.monotonic() - killed_at < 5
                page.wait_for_selector(
                    f'.replica[data-node="{victim.address}"][data-state="down"]', timeout=3000
                )
                assert "5/6" in page.inner_text("#pill-nodes")
                assert not errors, errors
            finally:
                context.close()
    finally:
        load.stop_event.set()
        load.join(10)
        shutil.rmtree(profile, ignore_errors=True)
    assert SCREENSHOT.stat().st_size > 10_000


def _check_cluster_shown(page: Any, cluster: LocalCluster) -> None:
    page.wait_for_function(
        "document.querySelectorAll('#nodes-table tr[data-state=\"up\"]').length === 6",
        timeout=15000,
    )
    for node in cluster.nodes:
        row = page.locator(f'#nodes-table tr[data-node="{node.address}"]')
        assert row.count() == 1
        assert "n" + node.node_id in row.inner_text()
    shards = page.eval_on_selector_all(".shard[data-shard]", "els => els.map(e => e.dataset.shard)")
    assert sorted(shards) == ["s1", "s2"]
    for shard, members in cluster.view_json().items():
        card = page.locator(f'.shard[data-shard="{shard}"]')
        for member in members:
            assert card.locator(f'.replica[data-node="{member["address"]}"]').count() == 1
    assert "6/6" in page.inner_text("#pill-nodes")
    assert "epoch 1" in page.inner_text("#pills")


def _check_key_browser(page: Any, key: str) -> None:
    page.fill("#key-input", key)
    page.click("#key-go")
    page.wait_for_function(
        "document.querySelectorAll('#key-result tr[data-holds=\"1\"]').length === 3",
        timeout=10000,
    )
    result = page.inner_text("#key-result")
    assert "s2" in result
    assert result.count("alice@example.org") == 3
    assert "agree" in result
