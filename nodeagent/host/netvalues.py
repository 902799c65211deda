"""What netlink reports and takes, as plain frozen values in the kernel's own units.

The netlink adapter (nodeagent.host.netlink) returns and accepts these; the network mechanism
reasons about them through its port (nodeagent.mechanisms.netport.NetPort), and its pure model
(tcmodel.py) alone decides spellings and rounding. They live in the host layer, below both, so
the adapter never imports the mechanisms it serves. Rates are bytes/s, buffers psched ticks,
sizes bytes; a namespace is named as `ip netns` names it, "" being the agent's own.
"""

from __future__ import annotations

from dataclasses import dataclass


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
