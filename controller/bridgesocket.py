"""The far-edge bridge's control socket (a unix socket, JSON lines), as the controller speaks it.

The controller does not import the bridge's package (the daemons are independent), so this
adapter speaks the socket's documented protocol (faredge/control.py) itself: one JSON request
per line (`{"op": "list"|"show"|"set"|"unset"|"update", ...}`), one JSON answer per line,
`{"ok": true, ...}` or `{"ok": false, "error": {"kind", "field", "message"}}`. Every failure is
a BridgeError carrying the bridge's error kind (`invalid`, `not_found`, `internal`) or
`unreachable` (no bridge listening; a broken answer is `internal`): the REST API turns them into HTTP
statuses (controller.api.bridge), the faredge mechanism into a status (retry or not).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MAX_REPLY = 16 << 20
UNREACHABLE = "unreachable"


class BridgeError(Exception):
    """`kind` is the bridge's (`invalid` naming `field`, `not_found`, `internal`) or
    `unreachable`; only an unreachable bridge is worth retrying as is."""

    def __init__(self, message: str, kind: str, field: str = "") -> None:
        super().__init__(message)
        self.message, self.kind, self.field = message, kind, field

    @property
    def temporary(self) -> bool:
        return self.kind == UNREACHABLE


class BridgeSocket:
    """One connection per request (the bridge serves each in its own thread); nothing is
    opened before the first call."""

    def __init__(self, path: Path, timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s

    def list_devices(self) -> list[dict[str, Any]]:
        devices: list[dict[str, Any]] = self.call({"op": "list"})["devices"]
        return devices

    def get_device(self, device_id: str) -> dict[str, Any]:
        return self._device({"op": "show", "id": device_id})

    def set_twin(self, device_id: str, settings: Mapping[str, Any]) -> dict[str, Any]:
        return self._device({"op": "set", "id": device_id, "settings": dict(settings)})

    def unset_twin(self, device_id: str, keys: Sequence[str]) -> dict[str, Any]:
        return self._device({"op": "unset", "id": device_id, "keys": list(keys)})

    def update(self, device_ids: Sequence[str], app_dir: str) -> dict[str, Any]:
        """Start an over-the-air rollout of the app directory `app_dir` (a path on the bridge's
        host) to the devices; the bridge's plan: `{"devices": [{"id", "release", "version"}],
        "canary"}`. The rollout goes on in the bridge; `get_device(...)["ota"]` follows it."""
        return self.call({"op": "update", "ids": list(device_ids), "app": app_dir})

    def _device(self, request: dict[str, Any]) -> dict[str, Any]:
        device: dict[str, Any] = self.call(request)["device"]
        return device

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout_s)
                sock.connect(str(self.path))
                sock.sendall(json.dumps(request).encode() + b"\n")
                with sock.makefile("rb") as reader:
                    line = reader.readline(MAX_REPLY)
        except OSError as exc:
            raise BridgeError(f"far-edge bridge at {self.path}: unreachable: {exc}", UNREACHABLE) from None
        try:
            reply = json.loads(line)
        except ValueError:
            raise BridgeError(f"far-edge bridge at {self.path}: not a JSON answer", "internal") from None
        if not isinstance(reply, dict):
            raise BridgeError(f"far-edge bridge at {self.path}: not a JSON object", "internal")
        if not reply.get("ok"):
            error = reply.get("error") or {}
            kind, field = str(error.get("kind", "internal")), str(error.get("field", ""))
            message = str(error.get("message", "failed"))
            text = f"invalid {field}: {message}" if kind == "invalid" else message
            raise BridgeError(text, kind, field)
        return reply
