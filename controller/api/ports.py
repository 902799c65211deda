"""What the REST API reads and drives besides the object store, as small typed interfaces.

The routes never reach a subsystem directly: each one sits behind a Protocol here, the daemon's
composition root (controller.api.server) plugs in the real adapter, and tests plug in their
own. A port left out (None) makes its routes answer 503 naming what is not configured, never a
made-up value.

- PerformanceSource: per-app and per-component metrics (the Prometheus adapter implements it).
- DeviceGateway: the far-edge bridge's devices and twins (controller.api.bridge speaks the
  bridge's control-socket protocol; the controller never imports the bridge's package).
- PolicyControl: which placement policies the controller runs, and the heuristic/ML mode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

MODES = ("heuristic", "ml")


class PortError(Exception):
    """A port could not answer. `status` is the HTTP status the API answers with; `field`
    names the bad input when the caller is at fault."""

    def __init__(self, message: str, status: int = 503, field: str = "") -> None:
        super().__init__(message)
        self.message, self.status, self.field = message, status, field


class PerformanceSource(Protocol):
    """Live metrics of one app.

    Returns `{"app": {metric: value}, "components": {component: {metric: value}}}`: values are
    floats, or None for a metric the description names but no sample exists for yet. Metric
    names are Prometheus-style (`cpu_seconds_total`, `memory_bytes`, and the QoS metrics the
    description declares). Raises PortError when the metrics backend cannot be reached."""

    def app_performance(self, namespace: str, name: str) -> dict[str, Any]: ...


class DeviceGateway(Protocol):
    """The far-edge devices behind the bridge. Errors: PortError (404 unknown device, 422 a bad
    setting naming it, 503 the bridge unreachable)."""

    def list_devices(self) -> list[dict[str, Any]]: ...

    def get_device(self, device_id: str) -> dict[str, Any]: ...

    def set_twin(self, device_id: str, settings: Mapping[str, Any]) -> dict[str, Any]: ...

    def unset_twin(self, device_id: str, keys: Sequence[str]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class PolicyInfo:
    name: str
    enabled: bool
    mode: str  # "heuristic" or "ml": which mode the policy belongs to
    position: int  # priority in the chain (0 first); -1 when disabled


class PolicyControl(Protocol):
    """The policy chain the controller plans with. Changes are validated whole before anything
    is recorded (PortError 404/409/422 naming the policy or mode)."""

    def policies(self) -> list[PolicyInfo]: ...

    def set_enabled(self, name: str, enabled: bool) -> PolicyInfo: ...

    def mode(self) -> str: ...

    def set_mode(self, mode: str) -> str: ...


class NodeStates(Protocol):
    """What node agents say of the settings they hold (GetState): per knob its desired and
    actual value and whether it drifted. Errors: PortError (503 the agent unreachable)."""

    def knobs(self, target: str) -> list[dict[str, Any]]: ...
