"""The committed containerd stubs are what proto/generate_containerd.py makes from containerd's own
.proto files (Debian's golang-github-containerd-containerd-dev, containerd 1.6.20)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def test_committed_containerd_stubs_are_fresh(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "generate_containerd", REPO / "proto" / "generate_containerd.py"
    )
    assert spec and spec.loader
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    if not generator.SOURCE.exists():
        pytest.skip(f"{generator.SOURCE} absent: install golang-github-containerd-containerd-dev")
    fresh = generator.generate(tmp_path)
    assert fresh
    committed = sorted(
        p.relative_to(REPO) for p in (REPO / generator.PACKAGE).rglob("*") if p.suffix in (".py", ".pyi")
    )
    assert committed == sorted(p.relative_to(tmp_path) for p in fresh), (
        "run python proto/generate_containerd.py"
    )
    for path in fresh:
        assert (REPO / path.relative_to(tmp_path)).read_bytes() == path.read_bytes(), f"stale: {path.name}"
