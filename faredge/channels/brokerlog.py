"""Adapter to the broker's log file: counts what only the broker sees (session takeovers, refused logins).

With `use_username_as_clientid` the broker itself makes impersonation impossible: a client asking
for the bridge's or another device's id gets its own username as id. What is left to notice is a
second connection with the *same* credentials (a cloned board or a stolen password), which the
broker logs as `Client X already connected, closing old connection.`, and logins it refused
(`Client <unknown> disconnected, not authorised.`). Mosquitto 2.0 reports these nowhere else.

The watcher tails the file from its end at start (old lines were counted by the previous run, or
never matter), reopens it after rotation or truncation, and polls: a takeover is rare, and a
second of delay in a counter costs nothing.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

_RULES = (
    ("takeover", re.compile(r"Client (\S+) already connected, closing old connection")),
    ("auth_denied", re.compile(r"Client (\S+) disconnected, not authori[sz]ed")),
)


def classify(line: str) -> tuple[str, str] | None:
    """A broker log line → (event, client id), or None when it is not one we count."""
    for event, rule in _RULES:
        match = rule.search(line)
        if match:
            return event, match.group(1)
    return None


class BrokerLogWatcher:
    """Calls `on_event(event, client)` for each counted line appended to `path`."""

    def __init__(self, path: Path, on_event: Callable[[str, str], None], *, interval_s: float = 0.5) -> None:
        self.path = path
        self._on_event = on_event
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inode: int | None = None
        self._offset = 0
        self._partial = b""

    def start(self) -> None:
        try:
            st = self.path.stat()
            self._inode, self._offset = st.st_ino, st.st_size  # only what is logged from now on
        except OSError as exc:
            log.warning("broker log %s not readable yet (%s); watching for it", self.path, exc.strerror)
        self._thread = threading.Thread(target=self._loop, name="faredge-brokerlog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.poll()
            except OSError as exc:
                log.debug("broker log %s: %s", self.path, exc)

    def poll(self) -> None:
        """Read what was appended since the last poll (from the start after a rotation)."""
        st = os.stat(self.path)
        if st.st_ino != self._inode or st.st_size < self._offset:
            self._inode, self._offset, self._partial = st.st_ino, 0, b""
        if st.st_size == self._offset:
            return
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read(st.st_size - self._offset)
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for raw in lines:
            found = classify(raw.decode(errors="replace"))
            if found is not None:
                self._on_event(*found)
