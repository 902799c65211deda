"""What the network mechanism needs from netlink: one Protocol over the host's plain values.

The real implementation is nodeagent.host.netlink.NetlinkHost (netlink sockets, messages
packed by nodeagent.host.tcwire), built by the agent's bootstrap and handed in through
MechanismContext.netlink; unit tests pass an in-memory fake. The values
(nodeagent.host.netvalues) carry the kernel's own units (bytes/s, psched ticks, bytes) so the
pure model in tcmodel.py alone decides spellings and rounding.

A namespace is named as `ip netns` names it; "" is the agent's own namespace.

A port may load netlink lazily (nodeagent.host.lazynetlink); it then has a `loaded` attribute,
and the network mechanism probes kernel features with the first network request instead of at
start-up while it is False.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from nodeagent.host.netvalues import Feature, HtbClassParams, Link, RootState, TbfParams


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
