"""Regenerate the Python stubs of the node API from proto/ into mlsysops/.

Run `python proto/generate.py` after editing a .proto file; the stubs are committed so that
installing the project needs no grpcio-tools, and tests/unit/test_proto_stubs.py fails when
they are stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
PROTO_FILES = sorted(PROTO_ROOT.glob("mlsysops/**/*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Write *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for every proto file under out_dir."""
    protoc_python(PROTO_ROOT, [str(p.relative_to(PROTO_ROOT)) for p in PROTO_FILES], out_dir)
    return sorted(p for p in out_dir.rglob("*_pb2*.py*"))


def protoc_python(root: Path, files: list[str], out_dir: Path) -> None:
    """Run grpcio-tools' protoc on `files` (relative to `root`) with the well-known types on the path."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{root}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_ROOT.parent
    for path in generate(target):
        print(path)
