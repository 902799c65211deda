"""Atomic, durable JSON files under the agent's runtime directory.

Two shapes, for two needs:

- `JsonDocument` (the journal of originals): write a temp file, fsync it, rename it over the
  old one, fsync the directory. A crash or power cut at any point leaves the old or the new
  document, never a torn one. It is written only when a knob is written for the first time.
- `SlottedDocument` (the desired state, saved on every Apply that changes the profile): two slot
  files written in place, alternately, each with a sequence number and a CRC. A write killed
  half-way spoils only the older slot; load() takes the newest valid one. No rename and no
  fsync: on ext4 a rename over an existing file forces the data out (auto_da_alloc), measured at
  0.4-0.7 ms per save against ~10 us here, a third of the Apply budget. It is not fsynced
  because after a power cut the kernel's values are back to defaults anyway. A document that does not
parse is reported (CorruptState), never silently dropped: it may hold the only record of the
host's original values.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from pathlib import Path
from typing import Any

from nodeagent.errors import NodeAgentError

log = logging.getLogger(__name__)


class CorruptState(NodeAgentError):
    """A persisted document exists but cannot be trusted; the agent refuses to start."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"{path}: {reason}; refusing to start because it may hold the only record of the host's "
            f"original values (inspect it, then repair it or move it aside)"
        )
        self.path = path
        self.reason = reason


class JsonDocument:
    """One JSON object stored atomically at `path`, tagged with a format string."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self._tmp = path.with_name(f".{path.name}.tmp")

    def load(self) -> dict[str, Any] | None:
        """The stored object, None when absent; raises CorruptState when unreadable."""
        self._tmp.unlink(missing_ok=True)  # a write interrupted before its rename: never valid
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CorruptState(self.path, f"cannot be read: {exc.strerror or exc}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CorruptState(self.path, f"is not valid JSON ({exc})") from exc
        return _checked(data, self.fmt, self.path)

    def save(self, data: dict[str, Any]) -> None:
        payload = _encode(data, self.fmt)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(self._tmp, self.path)
        _fsync_dir(self.path.parent)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        _fsync_dir(self.path.parent)


class SlottedDocument:
    """One JSON object kept in two slot files (`<path>.0`, `<path>.1`) written alternately in place.

    Slot layout: a header line `<seq> <crc32> <length>` then the payload; a slot is valid when
    its payload has that length and CRC. Bytes after the payload (a longer older document, when
    the process died between pwrite and ftruncate) are ignored.
    """

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self._slots = (path.with_name(f"{path.name}.0"), path.with_name(f"{path.name}.1"))
        self._fds: dict[int, int] = {}
        self._sizes: dict[int, int] = {}  # each open slot's file size, to skip no-op ftruncates
        self._seq = 0
        self._next = 0

    def load(self) -> dict[str, Any] | None:
        """The newest valid slot's object; None when there is none yet; CorruptState when slots
        exist but none is valid."""
        found: list[tuple[int, int, dict[str, Any]]] = []
        present = [slot for slot in self._slots if slot.exists()]
        for index, slot in enumerate(self._slots):
            if slot in present and (parsed := self._parse(slot)) is not None:
                found.append((parsed[0], index, parsed[1]))
        if not found:
            if present:
                raise CorruptState(self.path, f"no valid slot among {', '.join(p.name for p in present)}")
            return None
        seq, index, data = max(found, key=lambda slot: slot[0])
        self._seq, self._next = seq, 1 - index
        return _checked(data, self.fmt, self.path)

    def save(self, data: dict[str, Any]) -> None:
        payload = _encode(data, self.fmt)
        self._seq += 1
        record = b"%d %d %d\n" % (self._seq, zlib.crc32(payload), len(payload)) + payload
        index = self._next
        fd = self._fd(index)
        os.pwrite(fd, record, 0)
        if len(record) < self._sizes[index]:  # a longer record leaves the file exactly its size
            os.ftruncate(fd, len(record))
        self._sizes[index] = len(record)
        self._next = 1 - index

    def _fd(self, index: int) -> int:
        if index not in self._fds:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._slots[index], os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._sizes[index] = os.fstat(fd).st_size
            self._fds[index] = fd
        return self._fds[index]

    @staticmethod
    def _parse(slot: Path) -> tuple[int, dict[str, Any]] | None:
        raw = slot.read_bytes()
        header, _, rest = raw.partition(b"\n")
        try:
            seq, crc, length = (int(x) for x in header.split())
            payload = rest[:length]
            if len(payload) != length or zlib.crc32(payload) != crc:
                raise ValueError("length or CRC mismatch")
            data = json.loads(payload)
        except ValueError as exc:
            log.warning("ignoring torn or corrupt slot %s: %s", slot, exc)
            return None
        return seq, data


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode(data: dict[str, Any], fmt: str) -> bytes:
    return json.dumps({"format": fmt, **data}, separators=(",", ":")).encode("utf-8")


def _checked(data: Any, fmt: str, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise CorruptState(path, f"is not a {fmt!r} document")
    return data
