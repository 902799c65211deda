"""The adapters at the agent's edges: the error→status table, message conversion, sd_notify."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import grpc
import pytest

from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb
from nodeagent.api import convert
from nodeagent.api.errors import TooManyWatchers, status_for
from nodeagent.errors import HostError, InvalidSpec, Unsupported
from nodeagent.host.systemd import SdNotifier
from nodeagent.mechanisms.base import Capabilities, Write
from nodeagent.service.events import EventKind
from nodeagent.service.registry import MechanismEntry
from nodeagent.service.store import CorruptState


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidSpec("cgroups.groups[0].path", "must be relative"), grpc.StatusCode.INVALID_ARGUMENT),
        (Unsupported("no cpufreq"), grpc.StatusCode.FAILED_PRECONDITION),
        (TooManyWatchers("full"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (HostError("cpu.max", "busy", errno.EBUSY), grpc.StatusCode.UNAVAILABLE),
        (HostError("cpu.max", "invalid", errno.EINVAL), grpc.StatusCode.INTERNAL),
        (CorruptState(Path("/run/j.json"), "torn"), grpc.StatusCode.DATA_LOSS),
        (KeyError("bug"), grpc.StatusCode.INTERNAL),
    ],
)
def test_every_error_maps_to_one_status(error: Exception, code: grpc.StatusCode) -> None:
    assert status_for(error)[0] == code


def test_invalid_argument_messages_start_with_the_field() -> None:
    assert status_for(InvalidSpec("cpufreq.settings[1].governor", "unknown governor 'turbo'"))[1] == (
        "cpufreq.settings[1].governor: unknown governor 'turbo'"
    )
    assert "bug" not in status_for(KeyError("bug"))[1]  # internals stay in the log


def test_profiles_cross_the_boundary_as_json_objects_with_proto_field_names() -> None:
    profile = pb.Profile()
    profile.cgroups.groups.add(path="app", cpu_weight=100)
    data = convert.profile_to_dict(profile)
    assert data == {"cgroups": {"groups": [{"path": "app", "cpu_weight": "100"}]}}
    assert convert.dict_to_profile(data) == profile


def test_absent_values_are_unset_optional_fields() -> None:
    msg = convert.write_to_pb(Write("cgroups", "app", None, "present"))
    assert not msg.HasField("before") and msg.after == "present"


def test_event_kind_filters_are_checked() -> None:
    assert convert.event_kinds([pb.Event.KIND_UNSPECIFIED, pb.Event.DRIFT]) == [EventKind.DRIFT]
    with pytest.raises(InvalidSpec) as err:
        convert.event_kinds([pb.Event.DRIFT, 99])
    assert err.value.field == "kinds[1]"


def test_inventory_takes_cpus_and_cgroups_from_probe_details() -> None:
    entries = [
        MechanismEntry("cpufreq", None, Capabilities(False, "no cpufreq", {"cpus": [{"id": 0}, {"id": 1}]})),
        MechanismEntry("cgroups", None, Capabilities(True, "", {"version": "v1", "missing": ("cpuset",)})),
        MechanismEntry("network", None, Capabilities(True, "", {"interfaces": "not a list"})),
    ]
    inv = convert.inventory("n1", entries, [pb.Device(id="d1")])
    assert [c.id for c in inv.cpus] == [0, 1] and inv.cgroup.version == "v1"
    assert inv.mechanisms[1].capabilities["missing"] == ["cpuset"]
    assert inv.mechanisms[0].reason == "no cpufreq" and inv.devices[0].id == "d1"
    assert inv.api_version == "mlsysops.nodeconfig.v1" and inv.memory_bytes > 0


def test_sd_notify_sends_datagrams_to_the_notify_socket(tmp_path: Path) -> None:
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(str(tmp_path / "notify"))
    try:
        notifier = SdNotifier({"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "4000000"})
        assert notifier.notify("READY=1", "STATUS=up")
        assert sink.recv(100) == b"READY=1\nSTATUS=up"
        assert notifier.watchdog_interval_s() == 2.0
    finally:
        sink.close()


def test_sd_notify_keeps_one_socket_for_every_ping(tmp_path: Path) -> None:
    """The watchdog pings several times a second: one socket for all of them, not one each."""
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(str(tmp_path / "notify"))
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    try:
        notifier = SdNotifier({"NOTIFY_SOCKET": str(tmp_path / "notify")})
        before = fds()
        for _ in range(3):
            assert notifier.notify("WATCHDOG=1")
        assert [sink.recv(100) for _ in range(3)] == [b"WATCHDOG=1"] * 3
        assert fds() == before + 1
        notifier.close()
        assert fds() == before
    finally:
        sink.close()


def test_sd_notify_is_a_no_op_outside_systemd_and_ignores_foreign_watchdogs() -> None:
    assert not SdNotifier({}).notify("READY=1")
    assert SdNotifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).watchdog_interval_s() is None
    assert SdNotifier({"WATCHDOG_USEC": "junk"}).watchdog_interval_s() is None


def test_a_stop_request_set_by_a_signal_ends_the_main_threads_wait() -> None:
    """The daemon's main thread waits (watchdog loop) until SIGTERM's handler sets the request."""
    import signal
    import time

    from nodeagent.daemon import StopRequest

    stop = StopRequest()
    started = time.monotonic()
    assert stop.wait(0.05) is False and time.monotonic() - started >= 0.05
    previous = signal.signal(signal.SIGALRM, lambda _signum, _frame: stop.set())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        started = time.monotonic()
        assert stop.wait(10) is True  # woken by the handler, not by the timeout
        assert time.monotonic() - started < 5
        assert stop.wait() is True and stop.wait(0) is True and stop.is_set()
        stop.set()  # a second signal changes nothing
        assert stop.wait(0) is True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
