"""Conversions between node-API messages and the service's plain values.

The profile crosses the boundary as a JSON object (MessageToDict with proto field names): that
is the documented input of every mechanism's validate(), and the same shape as a profile file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb
from nodeagent import __version__
from nodeagent.errors import InvalidSpec
from nodeagent.mechanisms.base import Write
from nodeagent.service.events import Event, EventKind
from nodeagent.service.registry import MechanismEntry
from nodeagent.service.reports import KnobView, StateReport

log = logging.getLogger(__name__)

API_VERSION = "mlsysops.nodeconfig.v1"

#: Which inventory field each mechanism's probe() details fill (details carry that message's fields).
INVENTORY_DETAILS = {"cgroups": "cgroup", "network": "network"}


def profile_to_dict(profile: pb.Profile) -> dict[str, Any]:
    return json_format.MessageToDict(profile, preserving_proto_field_name=True)


def dict_to_profile(data: Mapping[str, Any]) -> pb.Profile:
    return json_format.ParseDict(dict(data), pb.Profile())  # ParseDict is typed for dicts only


def write_to_pb(write: Write) -> pb.Write:
    msg = pb.Write(mechanism=write.mechanism, key=write.key)
    if write.before is not None:
        msg.before = write.before
    if write.after is not None:
        msg.after = write.after
    return msg


def timestamp(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def event_to_pb(event: Event) -> pb.Event:
    return pb.Event(
        kind=event.kind.value,  # EventKind values are the proto enum's names
        time=timestamp(event.time),
        mechanism=event.mechanism,
        key=event.key,
        message=event.message,
        generation=event.generation,
        details=dict(event.details),
    )


def event_kinds(kinds: Iterable[int]) -> list[EventKind]:
    """The requested kinds; KIND_UNSPECIFIED is ignored, an unknown number is invalid."""
    chosen: list[EventKind] = []
    for i, number in enumerate(kinds):
        if number == pb.Event.KIND_UNSPECIFIED:
            continue
        try:
            chosen.append(EventKind(pb.Event.Kind.Name(number)))
        except ValueError:
            raise InvalidSpec(f"kinds[{i}]", f"unknown event kind {number}") from None
    return chosen


def knob_to_pb(knob: KnobView) -> pb.KnobState:
    msg = pb.KnobState(mechanism=knob.mechanism, key=knob.key, drifted=knob.drifted)
    if knob.has_desired and knob.desired is not None:
        msg.desired = knob.desired
    if knob.actual is not None:
        msg.actual = knob.actual
    if knob.has_original and knob.original is not None:
        msg.original = knob.original
    return msg


def state_to_pb(state: StateReport) -> pb.NodeState:
    return pb.NodeState(
        desired=dict_to_profile(state.profile),
        generation=state.generation,
        knobs=[knob_to_pb(k) for k in state.knobs],
        drifted=state.drifted,
        last_apply=timestamp(state.last_apply),
        last_drift_check=timestamp(state.last_drift_check),
    )


def inventory(
    node_name: str, entries: Iterable[MechanismEntry], devices: Iterable[pb.Device]
) -> pb.Inventory:
    """The inventory from the mechanisms' probe() details.

    Conventions (docs/node-api.md): cpufreq's `cpus` entries carry `Cpu` fields, cgroups'
    details carry `CgroupInfo` fields, network's carry `NetworkInfo` fields. Every mechanism's
    full details are also in `mechanisms[].capabilities`.
    """
    inv = pb.Inventory(
        node_name=node_name,
        api_version=API_VERSION,
        agent_version=__version__,
        memory_bytes=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        architecture=os.uname().machine,
        devices=list(devices),
    )
    for entry in entries:
        details = _jsonable(entry.capabilities.details or {})
        info = inv.mechanisms.add(name=entry.name, available=entry.capabilities.available)
        info.reason = entry.capabilities.reason
        info.capabilities.update(details)
        if entry.name == "cpufreq":
            for cpu in details.get("cpus", ()):
                _merge(cpu, inv.cpus.add())
        elif entry.name in INVENTORY_DETAILS:
            _merge(details, getattr(inv, INVENTORY_DETAILS[entry.name]))
    if not inv.cpus:  # no cpufreq plugin at all: still say how many CPUs there are
        inv.cpus.extend(pb.Cpu(id=i) for i in range(os.cpu_count() or 1))
    return inv


def _merge(data: Mapping[str, Any], message: Message) -> None:
    """Fill `message` from a plugin's details; a malformed detail is logged, not fatal to the call."""
    try:
        json_format.ParseDict(dict(data), message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        log.warning("inventory details do not fit %s: %s", message.DESCRIPTOR.name, exc)


def _jsonable(details: Mapping[str, Any]) -> dict[str, Any]:
    """Struct-compatible copy: tuples become lists, other odd values strings."""
    return json.loads(json.dumps(details, default=str))
