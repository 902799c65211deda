"""Clean venvs per role, built once per test session from the wheel `python -m build` makes.

The venv helpers are bench/install.py's (the footprint benchmark installs the same way), loaded
as a module. pip reaches PyPI for the dependencies (its cache makes repeated runs fast).
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).parents[2] / "bench" / "install.py"


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_install", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def installer() -> ModuleType:
    return _load_bench()


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mlsysops-roles-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="session")
def dists(installer: ModuleType, workdir: Path) -> tuple[Path, Path]:
    wheel, sdist = installer.build_dists(workdir / "dist")
    return wheel, sdist


@pytest.fixture(scope="session")
def role_venvs(installer: ModuleType, workdir: Path, dists: tuple[Path, Path]) -> dict[str, Any]:
    wheel, _ = dists
    return {
        role: installer.make_venv(workdir / role, installer.requirement(wheel, role))
        for role in installer.ROLES
    }
