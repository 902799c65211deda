"""The bridge's local control socket, used by `mlsysops devices list|show|set|update|monitor`.

A unix stream socket (mode 0660: access is file permissions, no network exposure). Protocol:
one JSON request per line, `{"op": "list"|"show"|"set"|"unset"|"update"|"ota_key"|"monitor"|
"channel", ...}`; the answer is one JSON line `{"ok": true, ...}` or
`{"ok": false, "error": {"kind", "field", "message"}}`; `monitor` answers with one event per line
until the client hangs up; `channel` (a serial device's port, handed over: `mlsysops devices
deploy|console`) is followed by raw bytes both ways until the client hangs up, when the bridge
resumes the device's link. `update` starts an over-the-air rollout (faredge.ota). Errors are
turned into that shape in exactly one place (`error_reply`) and back into typed errors in one
place (`ControlClient`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from faredge.errors import FarEdgeError, Invalid, NotFound, Unavailable
from faredge.protocol.messages import check_device_id

if TYPE_CHECKING:  # the server side's: a client (every CLI command) does not load the bridge
    from faredge.bridge.router import Router

MAX_REQUEST = 65536
RELAY_POLL_S = 0.05
log = logging.getLogger(__name__)


class BytePort(Protocol):
    def read(self) -> bytes: ...
    def write(self, data: bytes) -> None: ...


class PortLeases(Protocol):
    """Who owns serial ports and can hand one over (faredge.bridge.serialports.SerialManager)."""

    def lease(self, device_id: str) -> AbstractContextManager[BytePort]: ...


class Updates(Protocol):
    """Over-the-air rollouts (faredge.ota.service.OtaService)."""

    def update(
        self, ids: list[str] | None, app_dir: Path, *, parallel: int = 4, max_failures: int = 1
    ) -> dict[str, Any]: ...

    def device_key(self, device_id: str) -> bytes: ...


def error_reply(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, Invalid):
        return {"ok": False, "error": {"kind": "invalid", "field": exc.field, "message": exc.reason}}
    if isinstance(exc, NotFound):
        return {"ok": False, "error": {"kind": "not_found", "field": "device", "message": str(exc)}}
    return {"ok": False, "error": {"kind": "internal", "field": "", "message": str(exc)}}


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        line = self.rfile.readline(MAX_REQUEST)
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise Invalid("request", "must be a JSON object")
            op = request.get("op")
            if op == "monitor":
                self._monitor()
                return
            if op == "channel":
                self._channel(request)
                return
            reply = self._answer(op, request)
        except ValueError as exc:
            reply = error_reply(exc if isinstance(exc, Invalid) else Invalid("request", f"not JSON: {exc}"))
        except FarEdgeError as exc:
            reply = error_reply(exc)
        except Exception as exc:  # a bug: the client gets an answer, the log the traceback
            log.exception("control request failed")
            reply = error_reply(exc)
        self._send(reply)

    def _answer(self, op: object, request: dict[str, Any]) -> dict[str, Any]:
        router = self.server.router
        if op == "list":
            return {"ok": True, "devices": router.views()}
        if op == "update":
            return {"ok": True, **self._update(request)}
        device_id = request.get("id")
        if not isinstance(device_id, str):
            raise Invalid("id", "required")
        if op == "show":
            return {"ok": True, "device": router.view(device_id)}
        if op == "ota_key":  # asked before the device's first connection: no registry entry needed
            check_device_id(device_id, "id")
            return {"ok": True, "id": device_id, "ota_key": self._updates().device_key(device_id).hex()}
        if op == "set":
            settings = request.get("settings")
            if not isinstance(settings, dict):
                raise Invalid("settings", "must be an object")
            router.set_desired(device_id, settings)
            return {"ok": True, "device": router.view(device_id)}
        if op == "unset":
            keys = request.get("keys")
            if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
                raise Invalid("keys", "must be a non-empty list of setting names")
            router.unset_desired(device_id, keys)
            return {"ok": True, "device": router.view(device_id)}
        raise Invalid("op", f"unknown operation {op!r}")

    def _updates(self) -> Updates:
        if self.server.updates is None:
            raise Invalid("op", "over-the-air updates need the bridge's MQTT transport")
        return self.server.updates

    def _update(self, request: dict[str, Any]) -> dict[str, Any]:
        ids = request.get("ids")
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
            raise Invalid("ids", "must be a list of device ids, or null for every MQTT device")
        app = request.get("app")
        if not isinstance(app, str) or not app:
            raise Invalid("app", "required: the app directory on the bridge's host")
        limits = {}
        for name in ("parallel", "max_failures"):
            v = request.get(name, 4 if name == "parallel" else 1)
            if type(v) is not int or v < 1:
                raise Invalid(name, "must be a positive integer")
            limits[name] = v
        return self._updates().update(ids, Path(app), **limits)

    def _monitor(self) -> None:
        sub = self.server.router.events.subscribe()
        try:
            self._send({"ok": True})
            while not self.server.stopping.is_set():
                event = sub.get(timeout=0.5)
                if event is not None:
                    self._send({**event, "missed": sub.missed})
        except OSError:
            pass  # the client went away
        finally:
            sub.close()

    def _channel(self, request: dict[str, Any]) -> None:
        device_id = request.get("id")
        if not isinstance(device_id, str):
            raise Invalid("id", "required")
        if self.server.leases is None:
            raise Invalid("op", "this bridge owns no serial ports")
        with self.server.leases.lease(device_id) as port:
            self._send({"ok": True})
            _relay(self.connection, port, self.server.stopping)

    def _send(self, obj: dict[str, Any]) -> None:
        self.wfile.write(json.dumps(obj, default=str).encode() + b"\n")
        self.wfile.flush()


def _relay(sock: socket.socket, port: BytePort, stopping: threading.Event) -> None:
    """Bytes both ways between a client socket and a port until either side ends."""
    done = threading.Event()

    def port_to_client() -> None:
        try:
            while not done.is_set():
                data = port.read()
                if data:
                    sock.sendall(data)
        except (OSError, Unavailable):
            pass
        finally:
            done.set()

    reader = threading.Thread(target=port_to_client, name="faredge-channel", daemon=True)
    reader.start()
    sock.settimeout(RELAY_POLL_S)
    try:
        while not done.is_set() and not stopping.is_set():
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            if not data:
                break  # the client hung up
            port.write(data)
    except (OSError, Unavailable):
        pass
    finally:
        done.set()
        reader.join(timeout=2)


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(
        self, path: str, router: Router, leases: PortLeases | None = None, updates: Updates | None = None
    ) -> None:
        self.router = router
        self.leases = leases
        self.updates = updates
        self.stopping = threading.Event()
        super().__init__(path, _Handler)


class ControlServer:
    """Constructed by the composition root; the socket is bound by `start()`, removed by `stop()`."""

    def __init__(
        self, path: Path, router: Router, leases: PortLeases | None = None, updates: Updates | None = None
    ) -> None:
        self.path = path
        self._router = router
        self._leases = leases
        self._updates = updates
        self._server: _Server | None = None

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket of a previous run
        self._server = _Server(str(self.path), self._router, self._leases, self._updates)
        os.chmod(self.path, 0o660)
        threading.Thread(target=self._server.serve_forever, name="faredge-control", daemon=True).start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class ControlClient:
    def __init__(self, path: Path, timeout_s: float = 10.0) -> None:
        self.path = path
        self._timeout = timeout_s

    def _open(self) -> socket.socket:
        """A connected control socket (Unavailable, saying so, when no bridge listens)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self._timeout)
        try:
            sock.connect(str(self.path))
        except OSError as exc:
            sock.close()
            raise Unavailable(
                f"the bridge is not running (control socket {self.path}: {exc.strerror})"
            ) from None
        return sock

    @contextlib.contextmanager
    def _connect(self, request: dict[str, Any], *, streaming: bool = False) -> Iterator[Any]:
        sock = self._open()
        if streaming:
            sock.settimeout(None)  # events come when they come; a timed-out file object is unusable
        with sock, sock.makefile("rwb") as stream:
            stream.write(json.dumps(request).encode() + b"\n")
            stream.flush()
            yield stream

    @staticmethod
    def _reply(line: bytes) -> dict[str, Any]:
        if not line:
            raise Unavailable("the bridge closed the control connection")
        reply: dict[str, Any] = json.loads(line)
        if reply.get("ok") is False:
            err = reply.get("error", {})
            if err.get("kind") == "invalid":
                raise Invalid(err.get("field", ""), err.get("message", ""))
            if err.get("kind") == "not_found":
                raise NotFound(err.get("message", ""))
            raise FarEdgeError(err.get("message", "bridge error"))
        return reply

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._connect(request) as stream:
            return self._reply(stream.readline())

    @contextlib.contextmanager
    def channel(self, device_id: str) -> Iterator[SocketChannel]:
        """A serial device's port, handed over by the bridge until the context ends."""
        sock = self._open()
        with sock:
            sock.sendall(json.dumps({"op": "channel", "id": device_id}).encode() + b"\n")
            line = bytearray()
            while not line.endswith(b"\n"):  # byte by byte: the port's bytes follow at once
                b = sock.recv(1)
                if not b:
                    break
                line += b
            self._reply(bytes(line))
            yield SocketChannel(sock)

    def monitor(self) -> Iterator[dict[str, Any]]:
        with self._connect({"op": "monitor"}, streaming=True) as stream:
            self._reply(stream.readline())
            while True:
                line = stream.readline()
                if not line:
                    return
                yield json.loads(line)


class SocketChannel:
    """The client end of a handed-over port: read() waits briefly and returns b"" when nothing
    came (the deploy's ByteChannel), Unavailable once the bridge closed it."""

    def __init__(self, sock: socket.socket, poll_s: float = 0.02) -> None:
        self._sock = sock
        sock.settimeout(poll_s)

    def read(self) -> bytes:
        try:
            data = self._sock.recv(65536)
        except TimeoutError:
            return b""
        except OSError as exc:
            raise Unavailable(f"channel: {exc}") from None
        if not data:
            raise Unavailable("the bridge closed the channel")
        return data

    def write(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise Unavailable(f"channel: {exc}") from None
