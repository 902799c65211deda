"""What the network mechanism needs from netlink, as plain values and one Protocol.

The real implementation is nodeagent.host.netlink.NetlinkHost (the only module importing
pyroute2); unit tests pass an in-memory fake. Values carry the kernel's own units (bytes/s,
psched ticks, bytes) so the pure model in tcmodel.py alone decides spellings and rounding.

A namespace is named as `ip netns` names it; "" is the agent's own namespace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Link:
    """One network interface as the inventory shows it."""

    name: str
    netns: str
    index: int
    state: str  # operstate, lower case: "up", "down", "unknown", ...
    mtu: int
    root_qdisc: str  # kind of the root qdisc, e.g. "noqueue", "pfifo_fast", "htb"


@dataclass(frozen=True)
class Qdisc:
    """A root qdisc. `handle` major 0 means the kernel's default, attached by the kernel itself.

    `params` holds the decoded options this package models: for htb {"default": minor}; for tbf
    {"rate": bytes/s, "buffer": ticks, "limit": bytes, "peak": bytes/s, "mtu": bytes}.
    """

    kind: str
    handle: int
    params: dict[str, int]


@dataclass(frozen=True)
class HtbClassParams:
    """One HTB class as carried by netlink: rates in bytes/s, buffers in psched ticks."""

    minor: int
    rate: int
    ceil: int
    buffer: int = 0
    cbuffer: int = 0
    quantum: int = 0  # bytes served per round among siblings; 0 lets the kernel derive it


@dataclass(frozen=True)
class TbfParams:
    """A TBF qdisc as carried by netlink."""

    rate: int  # bytes/s
    buffer: int  # psched ticks: time to send `burst` bytes at `rate`
    limit: int  # bytes queued at most


@dataclass(frozen=True)
class RootState:
    """One interface with its root qdisc and, when that is the HTB asked about, its classes."""

    link: Link
    qdisc: Qdisc | None
    classes: tuple[HtbClassParams, ...] = ()


@dataclass(frozen=True)
class Feature:
    """A kernel feature and whether this kernel has it, e.g. "qdisc/netem" unsupported.

    `probed` is False when the probe itself could not run (e.g. no right to create a
    namespace): the feature is then reported unsupported, but requests are not refused for it.
    """

    name: str
    supported: bool
    reason: str = ""
    probed: bool = True


class NetPort(Protocol):
    """Netlink operations on one host; errors surface as nodeagent.errors.HostError."""

    def namespaces(self) -> list[str]:
        """Named namespaces (files in the netns directory), sorted."""
        ...

    def links(self, netns: str) -> list[Link]:
        """Interfaces of a namespace; HostError when the namespace does not exist."""
        ...

    def roots(self, netns: str, ifnames: Sequence[str], htb_major: int | None) -> dict[str, RootState]:
        """The named interfaces that exist, each with its root qdisc and, when that root is an
        HTB with handle `htb_major:`, its classes (sorted by minor). One qdisc dump serves all
        the names, so reading a whole profile costs a few requests per namespace. HostError
        (ENOENT) when the namespace does not exist."""
        ...

    def replace_htb_root(self, netns: str, ifname: str, major: int, default_minor: int) -> None:
        """Create (or graft over the current root) an HTB root qdisc `major:`."""
        ...

    def replace_htb_class(self, netns: str, ifname: str, major: int, params: HtbClassParams) -> None:
        """Create or change class `major:minor` directly below the root."""
        ...

    def delete_htb_class(self, netns: str, ifname: str, major: int, minor: int) -> None:
        """Delete class `major:minor`; nothing happens when it does not exist."""
        ...

    def replace_tbf_root(self, netns: str, ifname: str, major: int, params: TbfParams) -> None:
        """Create, change, or graft over the current root, a TBF root qdisc `major:`."""
        ...

    def delete_root(self, netns: str, ifname: str, handle: int) -> None:
        """Delete the root qdisc with this handle: the kernel re-attaches its default."""
        ...

    def probe_features(self, qdisc_kinds: Sequence[str], link_kinds: Sequence[str]) -> list[Feature]:
        """Which qdisc and link kinds this kernel knows, tried in a throwaway namespace."""
        ...

    def close(self) -> None: ...
