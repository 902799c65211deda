"""The unix socket's front door: who is calling, from the kernel (SO_PEERCRED).

gRPC's Python server does not tell a servicer which process is on the other end of a unix
socket. So the agent owns the public socket itself: each accepted connection has its peer's
uid and gid read with SO_PEERCRED, then is relayed byte for byte to the gRPC server on a
loopback port of its own. The relay's local port names the connection there (context.peer() is
"ipv4:127.0.0.1:<port>"), and `PeerTable.identity()` turns it back into the uid/gid proven at
accept time. A client that dials the loopback port directly has no entry, so it is anonymous
(authz.policy's `*`), never anyone it claims to be. (A plain-TCP listener, `listen.insecure`,
labs only, could see a source port equal to a live relay's: do not combine it with a policy
that trusts local uids.)
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import socket
import struct
import threading
from pathlib import Path

from nodeagent.service.authz import Identity

log = logging.getLogger(__name__)

_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
CHUNK = 256 * 1024


class PeerTable:
    """Loopback port of a relayed connection -> the identity proven at accept time."""

    def __init__(self) -> None:
        self._by_port: dict[int, Identity] = {}
        self._lock = threading.Lock()

    def add(self, port: int, identity: Identity) -> None:
        with self._lock:
            self._by_port[port] = identity

    def remove(self, port: int) -> None:
        with self._lock:
            self._by_port.pop(port, None)

    def identity(self, peer: str) -> Identity | None:
        """The identity of a gRPC peer string if it is one of our relays, else None."""
        host, _, port = peer.rpartition(":")
        if host not in ("ipv4:127.0.0.1", "ipv6:[::1]") or not port.isdigit():
            return None
        with self._lock:
            return self._by_port.get(int(port))


def group_id(group: str) -> int:
    """A group name or number -> gid; KeyError when there is no such group."""
    return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid


class PeerCredSocket:
    """Listen on `path`, relay every connection to `backend` (host, port), record its peer."""

    def __init__(self, path: Path, backend: tuple[str, int], peers: PeerTable) -> None:
        self._path = path
        self._backend = backend
        self._peers = peers
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def bind(self, mode: int, gid: int | None) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        listener.bind(str(self._path))
        if gid is not None:
            os.chown(self._path, -1, gid)
        os.chmod(self._path, mode)
        listener.listen(64)
        self._listener = listener

    def start(self) -> None:
        self._thread = threading.Thread(target=self._accept_loop, name="peercred", daemon=True)
        self._thread.start()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            for conn in list(self._open):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    def _accept_loop(self) -> None:
        while (listener := self._listener) is not None:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            try:
                self._relay(client)
            except OSError as exc:
                log.warning("unix socket: cannot relay a connection: %s", exc)
                client.close()

    def _relay(self, client: socket.socket) -> None:
        _pid, uid, gid = _CRED.unpack(client.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
        upstream = socket.create_connection(self._backend)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        port = upstream.getsockname()[1]
        self._peers.add(port, Identity(uid=uid, gid=gid))
        with self._lock:
            self._open.update((client, upstream))
        remaining = [2]  # directions still open; the last one to end closes both sockets

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(CHUNK):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                with self._lock:
                    remaining[0] -= 1
                    last = remaining[0] == 0
                    if last:
                        self._open.difference_update((client, upstream))
                if last:
                    self._peers.remove(port)
                    client.close()
                    upstream.close()

        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=pump, args=(src, dst), name="peercred-relay", daemon=True).start()
