"""Side effects live in adapters (docs: STYLE.md, habit 2): the mechanisms and the engine are
pure policy over ports, so they import no transport, no socket and no foreign-function layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[3] / "nodeagent"
SIDE_EFFECTS = ("grpc", "google.protobuf", "socket", "ctypes", "psutil", "prometheus_client", "pyroute2")
PURE = ("mechanisms", "service")


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


DOMAIN = sorted(p for layer in PURE for p in (PACKAGE / layer).glob("*.py"))


@pytest.mark.parametrize("module", DOMAIN, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_domain_imports_no_side_effects(module: Path) -> None:
    tops = {s.split(".")[0] for s in SIDE_EFFECTS}
    found = {n for n in imported(module) if n.split(".")[0] in tops}
    assert not found, f"{module.relative_to(PACKAGE)} imports {sorted(found)}"
