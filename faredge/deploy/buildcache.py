"""Build results kept by content: what mpy-cross made of a source, and which sources parse.

Compiling is the slowest host-side step of a deploy (one mpy-cross process per module) and was
the whole cost of an unchanged redeploy, yet its result depends only on the source bytes, the
compiler and the target. The key is a SHA-256 over exactly those, so an entry can never be stale:
a changed source, another mpy-cross or another .mpy version is another key. An entry is written
to a temporary name and renamed, so a concurrent or interrupted deploy never leaves half a file
under a key. The root is injectable (tests; `None` keeps nothing, for read-only homes).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path


def default_root() -> Path:
    """$MLSYSOPS_CACHE_DIR, else $XDG_CACHE_HOME/mlsysops/build, else ~/.cache/mlsysops/build."""
    env = os.environ.get("MLSYSOPS_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlsysops" / "build"


def key(*parts: bytes) -> str:
    """The entry name for these inputs (each part length-prefixed: no two inputs collide)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()


class BuildCache:
    """A directory of entries named by key; a missing or unreadable entry is a miss."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def get(self, name: str) -> bytes | None:
        if self.root is None:
            return None
        try:
            return (self.root / name).read_bytes()
        except OSError:
            return None

    def put(self, name: str, data: bytes) -> None:
        """Store an entry; a cache that cannot be written is only slower, never an error."""
        if self.root is None:
            return
        with contextlib.suppress(OSError):
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".put-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.root / name)
            except OSError:
                os.unlink(tmp)
                raise
