"""The committed node-API stubs must match what proto/generate.py produces from the .proto files."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _load_generator():
    spec = importlib.util.spec_from_file_location("proto_generate", REPO / "proto" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_are_fresh(tmp_path: Path) -> None:
    fresh = _load_generator().generate(tmp_path)
    assert fresh, "no proto files found"
    for path in fresh:
        committed = REPO / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} missing: run python proto/generate.py"
        assert committed.read_bytes() == path.read_bytes(), "stale: run python proto/generate.py"
