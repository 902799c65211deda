"""Who may call what: caller identities mapped to roles by a small policy (config `authz`).

An identity is what the transport proved, never what a request says: on the unix socket the
peer's uid and gid (SO_PEERCRED), on TCP the client certificate's CN and SANs. A policy maps
identity patterns (`uid:0`, `gid:1001`, `cn:controller`, `san:ctl.example`, `*`) to roles; the
most privileged match wins, no match means no access. Roles are ordered, each including the ones
before it: read < apply < reset < admin. Methods not in the table (added later, by other
services) need admin until someone decides otherwise: a new RPC is never open by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from nodeagent.errors import Forbidden

ROLES = ("read", "apply", "reset", "admin")

#: The role each NodeConfig method needs.
METHOD_ROLES: Mapping[str, str] = {
    "GetInventory": "read",
    "GetState": "read",
    "GetTelemetryConfig": "read",
    "WatchEvents": "read",
    "Apply": "apply",
    "ReportDevices": "apply",
    "SetTelemetryConfig": "apply",
    "Reset": "reset",
}


@dataclass(frozen=True)
class Identity:
    """A caller as its transport proved it (uid/gid on the unix socket, names from a certificate)."""

    uid: int | None = None
    gid: int | None = None
    names: tuple[str, ...] = ()  # certificate: ("cn:controller", "san:ctl.example", ...)
    keys: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        keys = [*self.names]
        if self.uid is not None:
            keys.append(f"uid:{self.uid}")
        if self.gid is not None:
            keys.append(f"gid:{self.gid}")
        object.__setattr__(self, "keys", tuple(keys))

    @property
    def label(self) -> str:
        """How events and logs name the caller: its first key, or "anonymous"."""
        return self.keys[0] if self.keys else "anonymous"


ANONYMOUS = Identity()


class Policy:
    """Identity patterns -> roles (validated by the config loader)."""

    def __init__(self, rules: Mapping[str, str]) -> None:
        unknown = sorted(set(rules.values()) - set(ROLES))
        if unknown:
            raise ValueError(f"unknown roles {unknown} (known: {', '.join(ROLES)})")
        self._rules = dict(rules)

    def role(self, identity: Identity) -> str | None:
        """The most privileged role any of the identity's keys (or `*`) has; None: no access."""
        ranks = [ROLES.index(self._rules[k]) for k in (*identity.keys, "*") if k in self._rules]
        return ROLES[max(ranks)] if ranks else None

    def check(self, method: str, identity: Identity) -> None:
        """Forbidden unless the identity's role covers the method."""
        needed = METHOD_ROLES.get(method, "admin")
        role = self.role(identity)
        if role is None or ROLES.index(role) < ROLES.index(needed):
            has = f"role {role!r}" if role else "no role"
            raise Forbidden(
                f"{method} needs role {needed!r}; {identity.label} has {has} (authz.policy)"
            )
