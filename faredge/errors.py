"""The few error types of the bridge.

Adapters translate library errors (paho, pyserial, grpc, OSError) into these at their edge, so the
domain and the CLI only ever see our types. `Invalid` carries the offending field: every rejection
of bad input names the field and the reason.
"""

from __future__ import annotations


class FarEdgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class Invalid(FarEdgeError, ValueError):
    """Bad input (config, CLI argument, message): nothing was changed."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Dropped(FarEdgeError):
    """A message or frame that is counted and dropped; `reason` is the metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Unavailable(FarEdgeError):
    """A peer (broker, node agent, bridge control socket, serial port) cannot be reached now."""


class NotFound(FarEdgeError, KeyError):
    """An unknown device id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"
