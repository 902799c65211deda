"""cpufreq: per-CPU scaling governor and min/max frequency, checked against what sysfs offers.

Profile section (proto `CpuFreqProfile`, JSON mapping with proto field names)::

    {"settings": [{"cpus": "0-3", "governor": "powersave", "min_khz": 800000, "max_khz": 2000000}]}

`cpus` is a kernel cpu list; "" selects every online CPU that has a cpufreq policy. Each of
governor/min_khz/max_khz is optional, but a setting must set at least one.

Knobs (one per cpufreq *policy*; CPUs sharing a policy share the files, so the key names the
policy's lowest CPU whichever of its CPUs the profile selected):

    cpuN/scaling_governor   governor name           sys/devices/system/cpu/cpuN/cpufreq/scaling_governor
    cpuN/scaling_min_freq   kHz, decimal            .../scaling_min_freq
    cpuN/scaling_max_freq   kHz, decimal            .../scaling_max_freq

Validation: the governor must be listed in scaling_available_governors; a frequency must lie in
[cpuinfo_min_freq, cpuinfo_max_freq] and, when the driver publishes
scaling_available_frequencies, be one of them (the kernel would otherwise silently round it and
the value read back would never match); the resulting min must not exceed the resulting max
(current values fill in what the profile leaves out); two settings may not ask different values
of one policy. Unknown, offline or cpufreq-less CPUs are refused; on a node without any cpufreq
(most VMs) a non-empty section raises Unsupported.

Order: governor first, then writes that widen the [min, max] range, then those that narrow it,
so every intermediate state keeps min <= max (raising both: max first; lowering both: min first).

probe() details (for the inventory; entries of `cpus` carry exactly the proto `Cpu` fields)::

    {"cpus": [{"id": 0, "cpufreq_available": True, "available_governors": [...],
               "available_frequencies_khz": [...], "cpuinfo_min_khz": ..., "cpuinfo_max_khz": ...,
               "governor": "...", "scaling_min_khz": ..., "scaling_max_khz": ..., "current_khz": ...},
              {"id": 1, "cpufreq_available": False}, ...],
     "policies": [{"cpus": "0-1", "driver": "acpi-cpufreq"}, ...]}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nodeagent.errors import HostError, InvalidSpec, Unsupported
from nodeagent.host import cpulist
from nodeagent.mechanisms import cpuspec
from nodeagent.mechanisms.base import Capabilities, MechanismContext, Plan, Snapshot, Value, Write
from nodeagent.mechanisms.cpufreq_sysfs import (
    CpuFreqState,
    attr_path,
    online_cpus,
    present_cpus,
    read_cpu,
)

NO_CPUFREQ = "no cpufreq in sysfs (e.g. a VM)"


def _check_governor(state: CpuFreqState, value: Any) -> str:
    if not value:
        raise ValueError("must not be empty")
    if state.governors and value not in state.governors:
        raise ValueError(f"unknown governor {value!r} (cpu{state.cpu} offers: {', '.join(state.governors)})")
    return str(value)


def _check_frequency(state: CpuFreqState, value: Any) -> str:
    if not state.cpuinfo_min <= value <= state.cpuinfo_max:
        raise ValueError(
            f"{value} kHz is outside cpu{state.cpu}'s hardware range "
            f"[{state.cpuinfo_min}, {state.cpuinfo_max}] kHz (cpuinfo_min_freq/cpuinfo_max_freq)"
        )
    if state.frequencies and value not in state.frequencies:
        offered = " ".join(str(f) for f in state.frequencies)
        raise ValueError(f"{value} kHz is not in cpu{state.cpu}'s scaling_available_frequencies ({offered})")
    return str(value)


@dataclass(frozen=True)
class FreqKnob:
    """One row of the knob table: profile field -> sysfs attribute."""

    field: str
    attr: str
    read: Callable[[Mapping[str, Any], str, str], Any]  # type check of the profile field
    check: Callable[[CpuFreqState, Any], str]  # meaning check -> canonical value
    bound: str | None  # "min"/"max": which end of the range it moves (decides widen vs narrow)


KNOBS: tuple[FreqKnob, ...] = (
    FreqKnob("governor", "scaling_governor", cpuspec.optional_str, _check_governor, None),
    FreqKnob("min_khz", "scaling_min_freq", cpuspec.optional_int, _check_frequency, "min"),
    FreqKnob("max_khz", "scaling_max_freq", cpuspec.optional_int, _check_frequency, "max"),
)
_BY_ATTR = {k.attr: k for k in KNOBS}
_KEY = re.compile(r"^cpu(\d+)/([a-z_]+)$")
_SETTING_FIELDS = ("cpus", *(k.field for k in KNOBS))


@dataclass(frozen=True)
class _Choice:
    """A value chosen for one policy's knob, remembered to report conflicts precisely."""

    value: str
    field: str
    cpu: int


class CpuFreqMechanism:
    """Governor and frequency limits per cpufreq policy (see the module docstring)."""

    name = "cpufreq"

    def __init__(self, context: MechanismContext) -> None:
        self._fs = context.fs

    # -- probe -----------------------------------------------------------------------------

    def probe(self) -> Capabilities:
        try:
            states = {cpu: read_cpu(self._fs, cpu) for cpu in sorted(present_cpus(self._fs))}
        except HostError as exc:
            return Capabilities(False, f"cannot read cpufreq sysfs: {exc}")
        cpus = [s.inventory() if s else {"id": c, "cpufreq_available": False} for c, s in states.items()]
        policies: dict[frozenset[int], str] = {}
        for state in states.values():
            if state is not None:
                policies.setdefault(state.affected | {state.cpu}, state.driver)
        details = {
            "cpus": cpus,
            "policies": [
                {"cpus": cpulist.format(p), "driver": d} for p, d in sorted(policies.items(), key=_first)
            ],
        }
        if not policies:
            return Capabilities(False, NO_CPUFREQ, details)
        return Capabilities(True, "", details)

    # -- validate ----------------------------------------------------------------------------

    def validate(self, section: Mapping[str, Any], field: str) -> Plan:
        body = cpuspec.mapping(section, field, ("settings",))
        states: dict[int, CpuFreqState | None] = {}
        chosen: dict[tuple[frozenset[int], str], _Choice] = {}
        for i, entry in enumerate(cpuspec.items(body, "settings", field)):
            where = f"{field}.settings[{i}]"
            cpuspec.mapping(entry, where, _SETTING_FIELDS)
            values = [(k, v) for k in KNOBS if (v := k.read(entry, k.field, where)) is not None]
            if not values:
                raise InvalidSpec(where, "sets nothing: give governor, min_khz or max_khz")
            for cpu in self._select(entry, where, states):
                state = states[cpu]
                assert state is not None  # _select refuses CPUs without cpufreq
                for knob, raw in values:
                    self._choose(chosen, state, knob, raw, f"{where}.{knob.field}")
        self._check_ranges(chosen, states)
        return Plan({f"cpu{min(policy)}/{attr}": c.value for (policy, attr), c in chosen.items()})

    def _select(
        self, entry: Mapping[str, Any], where: str, states: dict[int, CpuFreqState | None]
    ) -> list[int]:
        """The CPUs a setting selects, each known, online and with cpufreq.

        An explicit list is strict; "" means every online CPU that has a policy, so a profile
        stays portable to machines where a few cores have no cpufreq driver.
        """
        text = cpuspec.optional_str(entry, "cpus", where) or ""
        present = present_cpus(self._fs)
        online = online_cpus(self._fs) & present
        for cpu in sorted(online - states.keys()):
            states[cpu] = read_cpu(self._fs, cpu)
        if not any(states[cpu] for cpu in online):
            raise Unsupported(f"{where}.cpus: {NO_CPUFREQ}")
        if not text.strip():
            return sorted(cpu for cpu in online if states[cpu] is not None)
        try:
            selected = cpulist.parse(text)
        except cpulist.CpuListError as exc:
            raise InvalidSpec(f"{where}.cpus", str(exc)) from None
        for cpu in sorted(selected):
            if cpu not in present:
                raise InvalidSpec(
                    f"{where}.cpus", f"cpu {cpu} does not exist (this node has {cpulist.format(present)})"
                )
            if cpu not in online:
                raise InvalidSpec(f"{where}.cpus", f"cpu {cpu} is offline")
            if states[cpu] is None:
                raise InvalidSpec(f"{where}.cpus", f"cpu {cpu} has no cpufreq policy")
        return sorted(selected)

    @staticmethod
    def _choose(
        chosen: dict[tuple[frozenset[int], str], _Choice],
        state: CpuFreqState,
        knob: FreqKnob,
        raw: Any,
        where: str,
    ) -> None:
        try:
            value = knob.check(state, raw)
        except ValueError as exc:
            raise InvalidSpec(where, str(exc)) from None
        slot = (state.affected | {state.cpu}, knob.attr)
        previous = chosen.setdefault(slot, _Choice(value, where, state.cpu))
        if previous.value != value:
            how = "is selected twice"
            if previous.cpu != state.cpu:
                how = f"shares a policy with cpu {previous.cpu}"
            raise InvalidSpec(
                where, f"{value} conflicts with {previous.value} from {previous.field}: cpu {state.cpu} {how}"
            )

    @staticmethod
    def _check_ranges(
        chosen: Mapping[tuple[frozenset[int], str], _Choice], states: Mapping[int, CpuFreqState | None]
    ) -> None:
        """min <= max per policy, with current values standing in for what is not set."""
        for policy in {p for p, _ in chosen}:
            low = chosen.get((policy, "scaling_min_freq"))
            high = chosen.get((policy, "scaling_max_freq"))
            anchor = low or high
            state = states.get(anchor.cpu) if anchor else None
            if anchor is None or state is None:
                continue
            lo = int(low.value) if low else state.scaling_min
            hi = int(high.value) if high else state.scaling_max
            if lo <= hi:
                continue
            if low and high:
                reason = f"{lo} kHz is above max_khz {hi} kHz"
            elif low:
                reason = f"{lo} kHz is above the current scaling_max_freq {hi} kHz; set max_khz too"
            else:
                reason = f"{hi} kHz is below the current scaling_min_freq {lo} kHz; set min_khz too"
            raise InvalidSpec(low.field if low else anchor.field, reason)

    # -- read / order / write -----------------------------------------------------------------

    def read(self, keys: Iterable[str], snapshot: Snapshot | None = None) -> dict[str, Value]:
        result: dict[str, Value] = {}
        for key in keys:
            cpu, knob = _parse_key(key)
            raw = self._fs.read_optional(attr_path(cpu, knob.attr))
            result[key] = None if raw is None else _canonical(knob, raw)
        return result

    def order(self, writes: Sequence[Write]) -> list[Write]:
        return sorted(writes, key=_phase)

    def write(self, write: Write) -> None:
        cpu, knob = _parse_key(write.key)
        if write.after is None:
            return  # the policy vanished (CPU offlined): nothing left to restore
        self._fs.write(attr_path(cpu, knob.attr), write.after)


def _parse_key(key: str) -> tuple[int, FreqKnob]:
    match = _KEY.match(key)
    knob = _BY_ATTR.get(match.group(2)) if match else None
    if match is None or knob is None:
        raise HostError(key, f"not a cpufreq knob (expected cpuN/{'|'.join(_BY_ATTR)})")
    return int(match.group(1)), knob


def _canonical(knob: FreqKnob, raw: str) -> str:
    text = raw.strip()
    return str(int(text)) if knob.bound and text.isdigit() else text


def _phase(write: Write) -> int:
    """0 governor, 1 widening the range, 2 unchanged/unknown, 3 narrowing it."""
    _, knob = _parse_key(write.key)
    if knob.bound is None:
        return 0
    before, after = write.before or "", write.after or ""
    if not (before.isdigit() and after.isdigit()) or before == after:
        return 2
    raised = int(after) > int(before)
    return 1 if raised == (knob.bound == "max") else 3


def _first(item: tuple[frozenset[int], str]) -> int:
    return min(item[0])
