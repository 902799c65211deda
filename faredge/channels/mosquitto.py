"""Adapter to the Mosquitto package: `mosquitto_passwd` and private broker processes.

Private brokers (tests, the demo, the benchmark) run the Debian `/usr/sbin/mosquitto` with a
config rendered by faredge.broker, on a loopback port, with persistence in their own directory.
"""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from faredge.broker import BrokerLayout, BrokerSettings
from faredge.errors import Invalid, Unavailable

MOSQUITTO = "/usr/sbin/mosquitto"


def mosquitto_binary() -> str | None:
    return MOSQUITTO if os.access(MOSQUITTO, os.X_OK) else shutil.which("mosquitto")


def set_password(passwd_file: Path, user: str, password: str) -> None:
    """Add or replace one user's entry (hashed by mosquitto_passwd itself)."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        raise Unavailable("mosquitto_passwd not found (Debian package mosquitto)")
    if not passwd_file.exists():
        passwd_file.touch(mode=0o600)
    result = subprocess.run(
        [tool, "-b", str(passwd_file), user, password], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise Invalid("password_file", f"mosquitto_passwd failed: {result.stderr.strip() or result.stdout}")


def broker_user(layout: BrokerLayout) -> str | None:
    """The `user` line of the layout's mosquitto.conf (None: none, or no config yet)."""
    try:
        lines = layout.conf.read_text().splitlines()
    except FileNotFoundError:
        return None
    users = [line.split(None, 1)[1].strip() for line in lines if line.startswith("user ")]
    return users[-1] if users else None


def grant_access(layout: BrokerLayout) -> None:
    """Let the broker's own user read what it needs after dropping privileges.

    `passwd` and `acl` stay owned by root, group of the broker's user, 0640 (Mosquitto re-reads
    them on SIGHUP, as that user); `data/` (persistence, pid file, log) belongs to the user. Only
    root can hand files to another user; for a private broker running as us there is nothing to do.
    """
    user = broker_user(layout)
    if user is None or user == getpass.getuser() or os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise Invalid("user", f"no Unix user {user!r} for the broker (Debian package mosquitto)") from None
    layout.data.mkdir(parents=True, exist_ok=True)
    os.chown(layout.data, entry.pw_uid, entry.pw_gid)
    os.chmod(layout.data, 0o750)
    for path in (layout.passwd, layout.acl):
        if path.exists():
            os.chown(path, 0, entry.pw_gid)
            os.chmod(path, 0o640)


def reload_broker(layout: BrokerLayout) -> bool:
    """SIGHUP a running broker of this layout so it re-reads passwords and ACLs."""
    try:
        pid = int(layout.pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
        return True
    except (OSError, ValueError):
        return False


def private_settings(port: int, **kw: Any) -> BrokerSettings:
    """Settings for a private broker (tests, demo, benchmark): it runs as the current user, so
    it can read the 0600 files we write instead of dropping to the `mosquitto` user."""
    return BrokerSettings(port=port, user=getpass.getuser(), **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise Unavailable(f"nothing listens on {host}:{port}: {exc}") from exc
            time.sleep(0.02)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM (a clean exit: Mosquitto saves its persistence), SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class MosquittoProcess:
    """A private broker: start(), stop() (clean: persistence is saved), restart()."""

    def __init__(self, layout: BrokerLayout, port: int, host: str = "127.0.0.1") -> None:
        self.layout, self.port, self.host = layout, port, host
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise Unavailable("mosquitto not installed (Debian package mosquitto)")
        self.layout.data.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [binary, "-c", str(self.layout.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_port(self.host, self.port)
        except Unavailable:
            err = self.stop()
            raise Unavailable(f"mosquitto did not start: {err}") from None

    def stop(self) -> str:
        proc, self._proc = self._proc, None
        if proc is None:
            return ""
        stop_process(proc)
        return proc.stderr.read().decode(errors="replace") if proc.stderr else ""

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> MosquittoProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
