"""One thin file layer for sysfs, procfs and cgroupfs, rooted at an injectable directory.

Production uses root "/"; tests and the demo point it at a temporary tree (see
nodeagent/host/simulated.py for a tree that rejects what the kernel rejects). Every path a
caller passes is relative to the root; nothing here decides *what* to write.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from nodeagent.errors import HostError

_READ_CHUNK = 64 * 1024


class HostFS:
    """Read and write small kernel files below `root`, translating OSError into HostError."""

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self.root = Path(root)
        self._prefix = os.path.join(str(self.root), "")  # "/" or "/tmp/x/"

    def path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def _abs(self, rel: str) -> str:
        """The absolute path as a string: a pathlib join per call costs more than the syscall
        itself, and the apply path makes dozens of these per request."""
        return self._prefix + rel.strip("/")

    def exists(self, rel: str) -> bool:
        return os.path.exists(self._abs(rel))

    def is_dir(self, rel: str) -> bool:
        """os.path.isdir() without its extra Python frame (a plan asks this a dozen times)."""
        try:
            return stat.S_ISDIR(os.stat(self._abs(rel)).st_mode)
        except (OSError, ValueError):
            return False

    def listdir(self, rel: str) -> list[str]:
        try:
            return sorted(os.listdir(self._abs(rel)))
        except OSError as exc:
            raise HostError(rel, exc.strerror or str(exc), exc.errno) from exc

    def subdirs(self, rel: str) -> list[str]:
        """Names of the directories in rel, sorted; from the directory entries' types, without
        a stat per entry (a cgroup directory holds dozens of files and a few groups)."""
        try:
            with os.scandir(self._abs(rel)) as entries:
                return sorted(e.name for e in entries if e.is_dir())
        except OSError as exc:
            raise HostError(rel, exc.strerror or str(exc), exc.errno) from exc

    def read(self, rel: str) -> str:
        """The file's content without the trailing newline the kernel adds.

        Plain os.read() calls rather than a text-mode open(): kernel attributes are tiny, and
        building a buffered text stream per read cost more than the read itself.
        """
        try:
            fd = os.open(self._abs(rel), os.O_RDONLY | os.O_CLOEXEC)
            try:
                chunks = [os.read(fd, _READ_CHUNK)]
                while chunks[-1]:  # procfs files may come in several pieces; sysfs in one
                    chunks.append(os.read(fd, _READ_CHUNK))
            finally:
                os.close(fd)
        except OSError as exc:
            raise HostError(rel, exc.strerror or str(exc), exc.errno) from exc
        return b"".join(chunks).decode("ascii", errors="replace").rstrip("\n")

    def read_optional(self, rel: str) -> str | None:
        """Like read(), but None when the file does not exist (an absent knob, not an error)."""
        try:
            return self.read(rel)
        except HostError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise

    def write(self, rel: str, value: str) -> None:
        """One write(2) of the whole value, as the kernel expects for sysfs/cgroupfs attributes."""
        data = value.encode("ascii")
        try:
            # O_TRUNC as a shell's `>` does: harmless on sysfs/cgroupfs, needed on test trees.
            fd = os.open(self._abs(rel), os.O_WRONLY | os.O_TRUNC)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            raise HostError(rel, f"write {value!r} failed: {exc.strerror or exc}", exc.errno) from exc

    def mkdir(self, rel: str) -> None:
        try:
            self.path(rel).mkdir()
        except FileExistsError:
            return
        except OSError as exc:
            raise HostError(rel, f"mkdir failed: {exc.strerror or exc}", exc.errno) from exc

    def rmdir(self, rel: str) -> None:
        try:
            self.path(rel).rmdir()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise HostError(rel, f"rmdir failed: {exc.strerror or exc}", exc.errno) from exc

    def resolve_within(self, base: str, rel: str) -> str:
        """Resolve rel below base (both relative to root) and refuse anything that escapes base.

        Guards cgroup targets against absolute paths, `..` and symlinks pointing out of the
        configured root. Returns the path relative to root.
        """
        if os.path.isabs(rel):
            raise ValueError("must be relative to the cgroup root, not absolute")
        if any(part == ".." for part in Path(rel).parts):
            raise ValueError("must not contain '..'")
        base_real = self.path(base).resolve()
        target_real = (base_real / rel).resolve()
        if target_real != base_real and base_real not in target_real.parents:
            raise ValueError("resolves outside the cgroup root (symlink?)")
        return str(target_real.relative_to(self.root.resolve()))
