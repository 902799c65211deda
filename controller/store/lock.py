"""One controller per store: an advisory lock beside the store file.

Any number of processes may read and write the store (the REST API, the CLI), but two
controllers reconciling the same apps would fight over every workload. The controller holds
an exclusive flock on `<store>.controller.lock` while it runs; a second one fails at once,
naming the holder's pid. The kernel drops the lock when its holder dies (even by SIGKILL), so
a crashed controller never blocks its restart.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from controller.kube.errors import Conflict


def lock_path(store_path: str | os.PathLike[str]) -> Path:
    path = Path(store_path)
    return path.with_name(path.name + ".controller.lock")


class ControllerLock:
    """`with ControllerLock(store_path):` around a controller's run (Conflict when held)."""

    def __init__(self, store_path: str | os.PathLike[str]) -> None:
        self.path = lock_path(store_path)
        self._fd: int | None = None

    def acquire(self) -> ControllerLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise Conflict(f"another controller (pid {holder}) runs on the store beside {self.path}; "
                           "one controller per store") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> ControllerLock:
        return self.acquire()

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None,
                 _tb: TracebackType | None) -> None:
        self.release()
