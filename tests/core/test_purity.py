"""The core must stay sans-I/O: no module under causalkv/core may import anything
that performs I/O, reads a clock, spawns threads or draws random numbers. This is
what lets the simulator drive the very same code deterministically."""

from __future__ import annotations

import ast
from pathlib import Path

import causalkv.core

FORBIDDEN = {
    "asyncio", "socket", "ssl", "select", "selectors", "time", "datetime", "random", "secrets",
    "threading", "multiprocessing", "concurrent", "subprocess", "os", "sys", "io", "pathlib",
    "shutil", "tempfile", "signal", "logging", "http", "urllib", "sqlite3", "uuid",
    "httptools", "uvicorn", "uvloop", "httpx", "aiohttp", "requests",
}  # fmt: skip


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_imports_nothing_impure() -> None:
    core_dir = Path(causalkv.core.__file__).parent
    modules = sorted(core_dir.glob("*.py"))
    assert len(modules) > 5
    offenders = {
        path.name: sorted(_imports(path) & FORBIDDEN)
        for path in modules
        if _imports(path) & FORBIDDEN
    }
    assert offenders == {}, f"impure imports in causalkv.core: {offenders}"


def test_purity_check_catches_an_impure_module(tmp_path: Path) -> None:
    impure = tmp_path / "impure.py"
    impure.write_text("import time\nfrom random import choice\n")
    assert _imports(impure) & FORBIDDEN == {"time", "random"}
