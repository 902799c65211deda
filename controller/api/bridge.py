"""DeviceGateway over the far-edge bridge's control socket (controller.bridgesocket).

Bridge errors become PortErrors here: invalid → 422 naming the field, not_found → 404, no
bridge listening → 503, anything else → 502.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from controller.api.ports import PortError
from controller.bridgesocket import UNREACHABLE, BridgeError, BridgeSocket

_STATUS = {"invalid": 422, "not_found": 404, UNREACHABLE: 503}
T = TypeVar("T")


@contextmanager
def _as_port_error() -> Iterator[None]:
    try:
        yield
    except BridgeError as exc:
        raise PortError(exc.message, _STATUS.get(exc.kind, 502), exc.field) from None


class BridgeDevices:
    """The REST API's DeviceGateway (controller.api.ports) over one bridge's control socket."""

    def __init__(self, path: Path, timeout_s: float = 10.0) -> None:
        self._socket = BridgeSocket(path, timeout_s)

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        with _as_port_error():
            return fn(*args)

    def list_devices(self) -> list[dict[str, Any]]:
        return self._call(self._socket.list_devices)

    def get_device(self, device_id: str) -> dict[str, Any]:
        return self._call(self._socket.get_device, device_id)

    def set_twin(self, device_id: str, settings: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(self._socket.set_twin, device_id, settings)

    def unset_twin(self, device_id: str, keys: Sequence[str]) -> dict[str, Any]:
        return self._call(self._socket.unset_twin, device_id, keys)
