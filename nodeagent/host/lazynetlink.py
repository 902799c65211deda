"""The netlink adapter, started when first needed.

The agent imports nodeagent.host.netlink and opens netlink sockets only when a call needs
netlink: a network write, a read of qdiscs, the interfaces of a named namespace, or the kernel
feature probe. Until then what needs no netlink is answered here: the named namespaces (files
in the netns directory) and the interfaces of the agent's own namespace, from sysfs
(`/sys/class/net`; the root qdisc is not in sysfs and shows as "" until netlink is loaded).
`loaded` tells the network mechanism whether features were probed.

(The adapter once loaded pyroute2, 4-10 MiB of RSS; it now packs and decodes its few message
kinds itself, tcwire.py, so loading it costs little.)
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nodeagent.errors import HostError
from nodeagent.host.netvalues import Feature, HtbClassParams, Link, RootState, TbfParams


class LazyNetlink:
    """NetPort that builds the NetlinkHost on the first call that needs it."""

    def __init__(self, netns_dir: str = "/run/netns", sysfs_net: str = "/sys/class/net") -> None:
        self.netns_dir = netns_dir
        self._sysfs_net = Path(sysfs_net)
        self._real: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._real is not None

    def _host(self) -> Any:
        with self._lock:
            if self._real is None:
                from nodeagent.host.netlink import NetlinkHost

                self._real = NetlinkHost(self.netns_dir)
            return self._real

    def namespaces(self) -> list[str]:
        return list_namespaces(self.netns_dir)

    def links(self, netns: str) -> list[Link]:
        if netns or self.loaded:
            return list(self._host().links(netns))
        return sysfs_links(self._sysfs_net)

    def roots(self, netns: str, ifnames: Sequence[str], htb_major: int | None) -> dict[str, RootState]:
        return dict(self._host().roots(netns, ifnames, htb_major))

    def replace_htb_root(self, netns: str, ifname: str, major: int, default_minor: int) -> None:
        self._host().replace_htb_root(netns, ifname, major, default_minor)

    def replace_htb_class(self, netns: str, ifname: str, major: int, params: HtbClassParams) -> None:
        self._host().replace_htb_class(netns, ifname, major, params)

    def delete_htb_class(self, netns: str, ifname: str, major: int, minor: int) -> None:
        self._host().delete_htb_class(netns, ifname, major, minor)

    def replace_tbf_root(self, netns: str, ifname: str, major: int, params: TbfParams) -> None:
        self._host().replace_tbf_root(netns, ifname, major, params)

    def delete_root(self, netns: str, ifname: str, handle: int) -> None:
        self._host().delete_root(netns, ifname, handle)

    def probe_features(self, qdisc_kinds: Sequence[str], link_kinds: Sequence[str]) -> list[Feature]:
        return list(self._host().probe_features(qdisc_kinds, link_kinds))

    def close(self) -> None:
        if self._real is not None:
            self._real.close()


def list_namespaces(netns_dir: str) -> list[str]:
    """Named namespaces: the files `ip netns` keeps in its directory, sorted."""
    try:
        return sorted(os.listdir(netns_dir))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise HostError(f"netns:{netns_dir}", str(exc), exc.errno) from exc


def sysfs_links(net: Path) -> list[Link]:
    """The interfaces of the agent's own namespace as sysfs lists them (root qdisc unknown: "")."""
    links: list[Link] = []
    try:
        names = sorted(os.listdir(net))
    except OSError as exc:
        raise HostError(f"-/{net}", f"cannot list interfaces: {exc.strerror}", exc.errno) from exc
    for name in names:
        try:
            index = int((net / name / "ifindex").read_text())
            mtu = int((net / name / "mtu").read_text())
            state = (net / name / "operstate").read_text().strip()
        except (OSError, ValueError) as exc:
            if getattr(exc, "errno", None) in (errno.ENOENT, errno.ENODEV):
                continue  # gone while listing
            raise HostError(f"-/{name}", f"cannot read sysfs: {exc}") from exc
        links.append(Link(name, "", index, state, mtu, ""))
    return sorted(links, key=lambda link: link.index)
