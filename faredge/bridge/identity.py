"""The identity rule: a message may only speak for the device its transport authenticated.

The MQTT topic names the device the broker authenticated (ACLs); a serial link's identity is the
id of its first birth or the port's configured `id`. A payload claiming another id is dropped
(`identity`), and a serial link that has not identified yet may only send a birth
(`unidentified`). Pure: the router calls it before anything is looked up or stored.
"""

from __future__ import annotations

from faredge.errors import Dropped
from faredge.protocol.messages import Birth, Message


def check_identity(message: Message, identity: str | None, kind: str) -> None:
    """Raise Dropped unless `message` may come from a link authenticated as `identity`."""
    if identity is None:
        if not isinstance(message, Birth):
            raise Dropped("unidentified", f"{kind} before the link's birth")
    elif message.id != identity:
        raise Dropped("identity", f"payload id {message.id!r} on the link of {identity!r}")
