"""DeviceGateway over the far-edge bridge's control socket (a unix socket, JSON lines).

The controller does not import the bridge's package (the daemons are independent), so this
adapter speaks the socket's documented protocol itself: one JSON request per line
(`{"op": "list"|"show"|"set"|"unset", ...}`), one JSON answer per line, `{"ok": true, ...}` or
`{"ok": false, "error": {"kind", "field", "message"}}`. Bridge errors become PortErrors here
(invalid → 422 naming the field, not_found → 404, anything else → 502; no socket → 503).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from controller.api.ports import PortError

MAX_REPLY = 16 << 20
_STATUS = {"invalid": 422, "not_found": 404}


class BridgeSocket:
    def __init__(self, path: Path, timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s

    def list_devices(self) -> list[dict[str, Any]]:
        devices: list[dict[str, Any]] = self._call({"op": "list"})["devices"]
        return devices

    def get_device(self, device_id: str) -> dict[str, Any]:
        return self._device({"op": "show", "id": device_id})

    def set_twin(self, device_id: str, settings: Mapping[str, Any]) -> dict[str, Any]:
        return self._device({"op": "set", "id": device_id, "settings": dict(settings)})

    def unset_twin(self, device_id: str, keys: Sequence[str]) -> dict[str, Any]:
        return self._device({"op": "unset", "id": device_id, "keys": list(keys)})

    def _device(self, request: dict[str, Any]) -> dict[str, Any]:
        device: dict[str, Any] = self._call(request)["device"]
        return device

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout_s)
                sock.connect(str(self.path))
                sock.sendall(json.dumps(request).encode() + b"\n")
                with sock.makefile("rb") as reader:
                    line = reader.readline(MAX_REPLY)
        except OSError as exc:
            raise PortError(f"far-edge bridge at {self.path}: unreachable: {exc}", 503) from None
        try:
            reply = json.loads(line)
        except ValueError:
            raise PortError(f"far-edge bridge at {self.path}: not a JSON answer", 502) from None
        if not isinstance(reply, dict):
            raise PortError(f"far-edge bridge at {self.path}: not a JSON object", 502)
        if not reply.get("ok"):
            error = reply.get("error") or {}
            kind, field = str(error.get("kind", "")), str(error.get("field", ""))
            message = str(error.get("message", "failed"))
            text = f"invalid {field}: {message}" if kind == "invalid" else message
            raise PortError(text, _STATUS.get(kind, 502), field)
        return reply
