"""The envelope every transport hands to the bridge: one device message, not yet parsed.

It lives below the channels and the bridge because both build it (paho's `on_message`, the
serial sessions) and the bridge consumes it; neither side needs the other to name it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple


class Inbound(NamedTuple):
    """One message from a transport. A NamedTuple, not a dataclass: it is built in paho's
    on_message for every message, and tuple construction is the cheapest immutable value."""

    transport: str  # "mqtt" or "serial"
    identity: str | None  # authenticated device id; None: serial link before its birth
    kind: str  # message name: birth, telemetry, twin/get, twin/reported, status
    payload: bytes
    port: str = ""  # serial port path
    done: Callable[[], object] | None = None  # acknowledges the message once processed (MQTT QoS 1)
