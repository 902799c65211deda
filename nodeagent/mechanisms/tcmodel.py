"""The canonical model of one interface's root qdisc, and its exact round trip through netlink.

A knob value (see base.py) is the compact JSON of a whole root tree, e.g.

    {"classes":[{"ceil":"20mbit","minor":16,"rate":"10mbit"}],"default_class":16,"kind":"htb"}
    {"burst":"32kb","kind":"tbf","latency":"50ms","rate":"1mbit"}

Why this module exists: the kernel does not store what the user wrote. TBF keeps the burst as a
time in psched ticks (`buffer`) and the latency as a queue length in bytes (`limit`), both
truncated. If read() simply converted back, "32kb" at 1gbit would read as 32744 bytes and every
apply would write again. So validate() canonicalises a request to exactly what the kernel will
report: encode to kernel units, decode back, print. Decoding picks the *smallest* value that
encodes to the stored integer, which makes decode(encode(.)) a projection: applying its result
again changes nothing (tests check this with hypothesis).

HTB class rates are stored exactly (bytes/s, 64-bit), so they only lose the sub-byte part of a
rate such as "1001bit". HTB burst/cburst are not part of the model: they are derived as tc does
(rate/HZ + MTU) on every write.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction

from nodeagent.host.netvalues import HtbClassParams, TbfParams
from nodeagent.mechanisms import tcunits

U32_MAX = 2**32 - 1
_HTB_MTU = 1600  # tc's default when deriving an HTB class burst
_HTB_R2Q = 10  # tc's default rate-to-quantum divisor


@dataclass(frozen=True)
class PschedClock:
    """The packet scheduler clock, from /proc/net/psched (constant on every kernel since 2.6.x).

    `ticks_per_second` converts TBF/HTB buffers; `hz` is what tc uses to size HTB bursts.
    """

    ticks_per_second: Fraction = Fraction(10**9, 64)
    hz: int = 10**9

    @classmethod
    def parse(cls, text: str | None) -> PschedClock:
        """Parse the four hex words of /proc/net/psched the way tc does; defaults when absent."""
        if not text:
            return cls()
        try:
            t2us, us2t, clock_res, wee = (int(word, 16) for word in text.split()[:4])
        except ValueError:
            return cls()
        if not (t2us and us2t and clock_res):
            return cls()
        return cls(Fraction(t2us * clock_res, us2t), wee if clock_res == 10**6 else 1000)


@dataclass(frozen=True)
class HtbClass:
    minor: int
    rate: int  # bytes/s
    ceil: int  # bytes/s


@dataclass(frozen=True)
class HtbRoot:
    default_class: int
    classes: tuple[HtbClass, ...]  # sorted by minor

    kind = "htb"


@dataclass(frozen=True)
class TbfRoot:
    rate: int  # bytes/s
    burst: int  # bytes
    latency: int  # microseconds

    kind = "tbf"


@dataclass(frozen=True)
class ForeignRoot:
    """A root qdisc someone else created: reported, never recreated (see network.py)."""

    kind: str
    handle: int

    @property
    def handle_text(self) -> str:
        return f"{self.handle >> 16:x}:"


Root = HtbRoot | TbfRoot | ForeignRoot


def tbf_encode(root: TbfRoot, clock: PschedClock) -> TbfParams:
    """Kernel parameters for a TBF, computed as tc computes them (truncating)."""
    buffer = math.floor(Fraction(root.burst) * clock.ticks_per_second / root.rate)
    burst = _burst_of(buffer, root.rate, clock)
    limit = math.floor(Fraction(root.rate * root.latency, 10**6)) + burst
    return TbfParams(rate=root.rate, buffer=buffer, limit=limit)


def _burst_of(buffer: int, rate: int, clock: PschedClock) -> int:
    """Smallest burst whose encoding is `buffer` ticks."""
    return math.ceil(Fraction(buffer * rate) / clock.ticks_per_second)


def tbf_decode(params: TbfParams, clock: PschedClock) -> TbfRoot:
    """The canonical TBF the kernel's parameters stand for (inverse of tbf_encode on its image)."""
    burst = _burst_of(params.buffer, params.rate, clock)
    queued = max(params.limit - burst, 0)
    latency = math.ceil(Fraction(queued * 10**6, params.rate))
    return TbfRoot(rate=params.rate, burst=burst, latency=latency)


def tbf_canonical(root: TbfRoot, clock: PschedClock) -> TbfRoot:
    """What the kernel will report after applying `root`."""
    return tbf_decode(tbf_encode(root, clock), clock)


def htb_class_params(cls: HtbClass, clock: PschedClock) -> HtbClassParams:
    """Netlink parameters of a class, with tc's default bursts (rate/HZ + MTU) as buffers."""

    def ticks(rate: int) -> int:
        burst = Fraction(rate, clock.hz) + _HTB_MTU
        return min(math.floor(burst * clock.ticks_per_second / rate), U32_MAX)

    return HtbClassParams(
        cls.minor, cls.rate, cls.ceil, ticks(cls.rate), ticks(cls.ceil), htb_quantum(cls.rate)
    )


def htb_quantum(rate: int) -> int:
    """The quantum the kernel would derive (rate / r2q, clamped to 1000..200000 bytes), given
    explicitly: the kernel then skips its "quantum of class is big" warning, which otherwise
    fills dmesg for every class above 16mbit on every apply."""
    return min(max(rate // _HTB_R2Q, 1000), 200_000)


# ---------------------------------------------------------------- JSON


def dumps(root: Root | None) -> str | None:
    """The knob value of a root: compact JSON with sorted keys; None for the kernel default."""
    if root is None:
        return None
    return json.dumps(_to_obj(root), sort_keys=True, separators=(",", ":"))


def _to_obj(root: Root) -> dict[str, object]:
    if isinstance(root, HtbRoot):
        classes = [
            {"minor": c.minor, "rate": tcunits.format_rate(c.rate), "ceil": tcunits.format_rate(c.ceil)}
            for c in root.classes
        ]
        return {"kind": "htb", "default_class": root.default_class, "classes": classes}
    if isinstance(root, TbfRoot):
        return {
            "kind": "tbf",
            "rate": tcunits.format_rate(root.rate),
            "burst": tcunits.format_size(root.burst),
            "latency": tcunits.format_time(root.latency),
        }
    return {"kind": root.kind, "handle": root.handle_text, "foreign": True}


def loads(value: str | None) -> Root | None:
    """Inverse of dumps() for values this package produced (ValueError otherwise)."""
    if value is None:
        return None
    try:
        obj = json.loads(value)
        if obj.get("foreign"):
            return ForeignRoot(str(obj["kind"]), int(str(obj["handle"]).rstrip(":"), 16) << 16)
        if obj["kind"] == "htb":
            classes = tuple(
                HtbClass(int(c["minor"]), tcunits.parse_rate(c["rate"]), tcunits.parse_rate(c["ceil"]))
                for c in obj["classes"]
            )
            return HtbRoot(int(obj["default_class"]), classes)
        if obj["kind"] == "tbf":
            return TbfRoot(
                tcunits.parse_rate(obj["rate"]),
                tcunits.parse_size(obj["burst"]),
                tcunits.parse_time(obj["latency"]),
            )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a root qdisc value: {value!r} ({exc})") from exc
    raise ValueError(f"not a root qdisc value: {value!r} (unknown kind)")
