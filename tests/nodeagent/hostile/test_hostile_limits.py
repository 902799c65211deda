"""Issue 11, defects 1, 2, 3 and 6: requests are bounded before any work, the engine lock is
never held while validating, reads never wait for a writer, errors quote a bounded prefix."""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb
from mlsysops.testing import files_below
from nodeagent.api.convert import dict_to_profile
from nodeagent.api.errors import status_for
from nodeagent.errors import HostError, InvalidSpec
from nodeagent.host import cpulist
from nodeagent.mechanisms.base import Capabilities, Plan, Snapshot, Value, Write
from nodeagent.mechanisms.cgroup_keys import check_group_path
from nodeagent.mechanisms.cpuspec import optional_int
from nodeagent.service.devices import DeviceRegistry
from nodeagent.service.engine import Engine
from nodeagent.service.events import EventBus
from nodeagent.service.limits import RequestLimits, check_profile
from tests.nodeagent.hostile.conftest import LiveAgent

HUGE_CPULIST = ",".join(["0-8191"] * 40_000)  # 280 KB: expanded id by id it held the lock 36 s


def code_of(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details() or ""


# ------------------------------------------------------------------ limits, named in the error


def test_limits_are_checked_on_the_whole_profile_and_named() -> None:
    limits = RequestLimits()
    groups = [{"path": f"g{i}"} for i in range(limits.max_items + 1)]
    with pytest.raises(InvalidSpec) as err:
        check_profile({"cgroups": {"groups": groups}}, limits)
    assert err.value.field == "cgroups.groups" and "limits.max_items" in err.value.reason
    with pytest.raises(InvalidSpec) as err:
        check_profile({"cgroups": {"groups": [{"path": "a", "cpuset_cpus": HUGE_CPULIST}]}}, limits)
    assert err.value.field == "cgroups.groups[0].cpuset_cpus"
    assert "limits.max_string_chars" in err.value.reason
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(40):
        inner["x"] = {}
        inner = inner["x"]
    with pytest.raises(InvalidSpec, match=r"limits\.max_depth"):
        check_profile({"extensions": {"plugin": deep}}, limits)


def test_interfaces_per_namespace_are_bounded() -> None:
    limits = RequestLimits(max_interfaces_per_netns=2)
    two = [{"name": f"e{i}", "netns": "a"} for i in range(2)] + [{"name": "e0"}]
    check_profile({"network": {"interfaces": two}}, limits)
    with pytest.raises(InvalidSpec, match=r"limits\.max_interfaces_per_netns") as err:
        check_profile({"network": {"interfaces": [*two, {"name": "e9", "netns": "a"}]}}, limits)
    assert err.value.field == "network.interfaces[3]"


def test_a_cpu_list_is_combined_as_ranges_and_stays_canonical() -> None:
    assert cpulist.canonical(",".join(["0-8191"] * 5000)) == "0-8191"
    assert cpulist.canonical("0-15:3/5") == cpulist.format(i for i in range(16) if i % 5 < 3)
    assert cpulist.canonical("3,0-2, 1") == "0-3"
    assert cpulist.parse("0-7:2/4") == {0, 1, 4, 5}


@pytest.mark.parametrize("text", ["\u0660", "\uff10-\uff11", "1\u06f2", "0-1\n,2\x00"])
def test_unicode_digits_are_not_cpu_ids_or_integers(text: str) -> None:
    with pytest.raises(cpulist.CpuListError):
        cpulist.parse(text)
    with pytest.raises(InvalidSpec, match="must be an integer"):
        optional_int({"n": text}, "n", "f")


@pytest.mark.parametrize(
    "path, reason",
    [("app\n", "must use only"), ("a/\nb", "must use only"), ("/".join(["x" * 255] * 20), "characters long")],
)
def test_group_paths_with_newlines_or_past_path_max_are_refused(path: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_group_path(path)


def test_errors_quote_a_bounded_prefix_of_the_input() -> None:
    error = InvalidSpec("x" * 1_000_000, "y" * 3_000_000)
    assert len(str(error)) < 1000 and "1000000 characters" in str(error)
    code, message = status_for(HostError("k" * 100_000, "m" * 100_000, errno.EINVAL))
    assert code == grpc.StatusCode.INTERNAL and len(message) < 2100


def test_a_vanished_file_is_worth_a_retry() -> None:
    assert status_for(HostError("g/cpu.max", "No such file", errno.ENOENT))[0] == grpc.StatusCode.UNAVAILABLE


# ------------------------------------------------------------------ devices


class Dev:
    def __init__(self, id: str, size: int = 10) -> None:
        self.id = id
        self.size = size


def test_reported_devices_are_bounded_per_source_in_sources_and_in_bytes() -> None:
    limits = RequestLimits(max_devices_per_source=3, max_sources=2, max_report_bytes=100)
    registry: DeviceRegistry[Dev] = DeviceRegistry(EventBus(), limits, size=lambda d: d.size)
    with pytest.raises(InvalidSpec, match=r"limits\.max_devices_per_source"):
        registry.report("a", [Dev(str(i)) for i in range(4)])
    with pytest.raises(InvalidSpec, match=r"limits\.max_report_bytes"):
        registry.report("a", [Dev("big", 101)])
    registry.report("a", [Dev("1")])
    registry.report("b", [Dev("2")])
    with pytest.raises(InvalidSpec, match=r"limits\.max_sources"):
        registry.report("c", [Dev("3")])
    registry.report("a", [])  # a source leaving makes room
    registry.report("c", [Dev("3")])
    assert [d.id for d in registry.devices()] == ["2", "3"]


def test_control_characters_are_stripped_from_source_and_device_ids_refused() -> None:
    registry: DeviceRegistry[Dev] = DeviceRegistry(EventBus())
    registry.report("fared\x00ge\x1b[31m\n", [Dev("d1")])
    with pytest.raises(InvalidSpec, match=r"devices\[0\]\.id"):
        registry.report("faredge", [Dev("bad\x1b[2J")])
    assert registry.devices()[0].id == "d1"


# ------------------------------------------------------------------ the lock


class Gate:
    """A mechanism whose validate() or write() waits until released (a slow request)."""

    name = "gate"

    def __init__(self) -> None:
        self.knobs: dict[str, Value] = {}
        self.in_validate = threading.Event()
        self.in_write = threading.Event()
        self.release = threading.Event()
        self.block_validate = False
        self.block_write = False

    def probe(self) -> Capabilities:
        return Capabilities(True)

    def validate(self, section: Mapping[str, Any], field: str) -> Plan:
        if self.block_validate:
            self.in_validate.set()
            assert self.release.wait(10)
        return Plan(dict(section.get("values", {})))

    def read(self, keys: Iterable[str], snapshot: Snapshot | None = None) -> dict[str, Value]:
        return {k: self.knobs.get(k) for k in keys}

    def order(self, writes: Sequence[Write]) -> list[Write]:
        return list(writes)

    def write(self, write: Write) -> None:
        if self.block_write:
            self.in_write.set()
            assert self.release.wait(10)
        self.knobs[write.key] = write.after


def _apply_in_thread(engine: Engine, profile: dict[str, Any]) -> threading.Thread:
    thread = threading.Thread(target=engine.apply, args=(profile,), daemon=True)
    thread.start()
    return thread


def test_the_engine_lock_is_not_held_while_a_request_is_validated(make_engine: Any) -> None:
    gate = Gate()
    engine = make_engine(gate)
    gate.block_validate = True
    slow = _apply_in_thread(engine, {"extensions": {"gate": {"values": {"k": "1"}}}})
    assert gate.in_validate.wait(5)
    try:
        assert engine.responsive(0.05)  # the watchdog's check and every other writer go on
        gate.block_validate = False
        assert engine.apply({"extensions": {"gate": {"values": {"j": "2"}}}}).writes_performed == 1
    finally:
        gate.release.set()
        slow.join(5)
    assert gate.knobs == {"k": "1", "j": "2"}  # validated across another's writes: planned again


def test_state_never_waits_for_a_writer(make_engine: Any) -> None:
    gate = Gate()
    engine = make_engine(gate)
    engine.apply({"extensions": {"gate": {"values": {"k": "1"}}}})
    gate.block_write = True
    slow = _apply_in_thread(engine, {"extensions": {"gate": {"values": {"k": "2"}}}})
    assert gate.in_write.wait(5)
    try:
        answered: list[Any] = []
        reader = threading.Thread(target=lambda: answered.append(engine.state()), daemon=True)
        reader.start()
        reader.join(2)
        assert answered and answered[0].generation == 1  # the committed state, not the one being written
    finally:
        gate.release.set()
        slow.join(5)


@pytest.fixture
def make_engine(tmp_path: Any) -> Callable[..., Engine]:
    from nodeagent.service.desired import DesiredStore
    from nodeagent.service.journal import Journal
    from nodeagent.service.registry import MechanismEntry, MechanismSet

    def make(*mechanisms: Any) -> Engine:
        entries = [MechanismEntry(m.name, m, m.probe()) for m in mechanisms]
        return Engine(
            MechanismSet(entries), Journal(tmp_path / "journal.json"), DesiredStore(tmp_path / "d.json"),
            EventBus(),
        )

    return make


# ------------------------------------------------------------------ through gRPC


def test_a_huge_field_is_invalid_argument_bounded_and_changes_nothing(live: LiveAgent) -> None:
    before = files_below(live.root)
    profile = dict_to_profile({"cgroups": {"groups": [{"path": "app", "cpuset_cpus": HUGE_CPULIST}]}})
    code, message = code_of(lambda: live.stub.Apply(pb.ApplyRequest(profile=profile), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "limits.max_string_chars" in message
    assert len(message) < 1000
    assert files_below(live.root) == before
    assert live.agent.engine.max_lock_hold_s < 0.25


def test_garbage_and_deep_messages_are_invalid_argument(live: LiveAgent) -> None:
    apply = live.channel.unary_unary(
        "/mlsysops.nodeconfig.v1.NodeConfig/Apply", request_serializer=None, response_deserializer=None
    )
    code, message = code_of(lambda: apply(b"\xff\xfe\x00garbage\x12\x99", timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Apply" in message
    deep = struct_pb2.Value()
    inner = deep
    for _ in range(200):
        inner = inner.struct_value.fields["x"]
    inner.string_value = "leaf"
    request = pb.ApplyRequest()
    request.profile.extensions["plugin"].CopyFrom(struct_pb2.Struct(fields={"x": deep}))
    raw = request.SerializeToString()
    code, _ = code_of(lambda: apply(raw, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_a_group_path_with_a_newline_is_refused_by_the_dry_run(live: LiveAgent) -> None:
    for path in ("app\n", "/".join(["x" * 255] * 20)):
        profile = dict_to_profile({"cgroups": {"groups": [{"path": path, "cpu_weight": 100}]}})
        code, message = code_of(lambda p=profile: live.stub.Apply(pb.ApplyRequest(profile=p, dry_run=True)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "cgroups.groups[0].path" in message


def test_oversized_device_reports_are_refused_and_the_inventory_stays_readable(live: LiveAgent) -> None:
    big = [pb.Device(id=f"d{i}", kind="sensor", attributes={"blob": "x" * 4000}) for i in range(1000)]
    code, message = code_of(lambda: live.stub.ReportDevices(pb.ReportDevicesRequest(source="s", devices=big)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "limits.max_report_bytes" in message
    live.stub.ReportDevices(pb.ReportDevicesRequest(source="bridge\x1b[31m\x00", devices=[pb.Device(id="d")]))
    inventory = live.stub.GetInventory(pb.GetInventoryRequest(), timeout=10)
    assert [d.id for d in inventory.devices] == ["d"]


def test_set_telemetry_with_only_an_interval_keeps_the_collector_running(live: LiveAgent) -> None:
    """Field presence: `{name, interval_ms}` re-times, it does not switch off (proto3's false)."""
    request = pb.SetTelemetryConfigRequest(collectors=[pb.Collector(name="cpu", interval_ms=2000)])
    cpu = next(c for c in live.stub.SetTelemetryConfig(request, timeout=10).collectors if c.name == "cpu")
    assert cpu.enabled and cpu.interval_ms == 2000
    off = pb.SetTelemetryConfigRequest(collectors=[pb.Collector(name="cpu", enabled=False)])
    cpu = next(c for c in live.stub.SetTelemetryConfig(off, timeout=10).collectors if c.name == "cpu")
    assert not cpu.enabled and cpu.interval_ms == 2000


def test_a_huge_list_is_refused_before_it_is_converted(live: LiveAgent) -> None:
    """50,000 interfaces took 23 s: now the decoded message is checked field by field first."""
    interfaces = [pb.InterfaceShaping(name=f"e{i}", remove=True) for i in range(50_000)]
    request = pb.ApplyRequest(profile=pb.Profile(network=pb.NetworkProfile(interfaces=interfaces)))
    code, message = code_of(lambda: live.stub.Apply(request, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith("profile.network.interfaces: 50000 entries") and "limits.max_items" in message
    assert live.agent.engine.max_lock_hold_s < 0.25
