"""The package layering of faredge/, checked: side effects stay in their adapters.

- paho, pyserial and grpc are imported only by their adapter in faredge/channels/;
- the protocol layer and the twin are pure: they import nothing of the bridge, the channels,
  the registry or any I/O library;
- nothing imports the composition root (bootstrap) except the daemon's entry points.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "faredge"
ADAPTERS = {"paho": "channels/mqtt.py", "serial": "channels/serial.py"}
PURE = ("protocol/", "twin/")
IO_MODULES = {
    "paho",
    "serial",
    "grpc",
    "socket",
    "subprocess",
    "os",
    "faredge.channels",
    "faredge.bridge",
    "faredge.registry",
    "faredge.control",
    "faredge.bootstrap",
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules() -> list[tuple[str, set[str]]]:
    files = [p for p in PACKAGE.rglob("*.py") if "virtual" not in p.relative_to(PACKAGE).parts]
    return [(p.relative_to(PACKAGE).as_posix(), imports(p)) for p in sorted(files)]


@pytest.mark.parametrize("library", sorted(ADAPTERS))
def test_io_libraries_are_imported_only_by_their_adapter(library: str) -> None:
    users = [
        name for name, found in modules() if any(i == library or i.startswith(library + ".") for i in found)
    ]
    assert users == [ADAPTERS[library]]


def test_protocol_and_twin_are_pure() -> None:
    for name, found in modules():
        if name.startswith(PURE):
            bad = {i for i in found if any(i == m or i.startswith(m + ".") for m in IO_MODULES)}
            assert not bad, f"{name} imports {bad}"


def test_only_the_entry_points_import_the_composition_root() -> None:
    users = {name for name, found in modules() if "faredge.bootstrap" in found}
    assert users <= {"daemon.py"}


def test_the_device_cli_loads_neither_grpc_nor_the_bridge() -> None:
    # `mlsysops devices flash` is timed against mpremote (bench/deploy.py deploy_cli_s): its
    # start-up must not pay for the node-API client (grpc) or the bridge's router and metrics.
    import subprocess
    import sys

    heavy = "('grpc', 'faredge.bridge.router', 'prometheus_client')"
    probe = f"import sys, faredge.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
