"""sd_notify(3) over the AF_UNIX datagram socket systemd passes in $NOTIFY_SOCKET.

Ten lines of protocol do not justify a dependency: READY=1 once the API listens, WATCHDOG=1 at
half of $WATCHDOG_USEC, STOPPING=1 when shutting down. Outside systemd (no $NOTIFY_SOCKET) every
call is a no-op, so the daemon runs the same under a test harness.
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

    def notify(self, *assignments: str) -> bool:
        """Send e.g. notify("READY=1", "STATUS=listening"); False when not under systemd or it failed."""
        if not self._address:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.sendto("\n".join(assignments).encode(), self._address)
            except OSError:
                return False
        return True

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
