"""End to end: a real agent process, driven through the gRPC stubs, on a simulated node tree."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb

GOVERNOR = "sys/devices/system/cpu/cpufreq/policy0/scaling_governor"
MAX_FREQ = "sys/devices/system/cpu/cpufreq/policy1/scaling_max_freq"
APP_WEIGHT = "sys/fs/cgroup/mlsysops/app/cpu.weight"


def profile(data: dict[str, Any]) -> pb.Profile:
    return json_format.ParseDict(data, pb.Profile())


GOOD = {
    "cpufreq": {"settings": [{"cpus": "0", "governor": "powersave"}, {"cpus": "1", "max_khz": 1600000}]},
    "cgroups": {"groups": [{"path": "app", "cpu_weight": 200}]},
}


def drain(stream: Any, into: list[pb.Event]) -> None:
    try:
        into.extend(stream)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.CANCELLED:
            raise


def read(env: Any, rel: str) -> str:
    return (env.fs_root / rel).read_text().strip()


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"cpufreq": {"settings": [{"cpus": "0", "governor": "turbo"}]}}, "cpufreq.settings[0].governor"),
        ({"cpufreq": {"settings": [{"cpus": "1", "max_khz": 9000000}]}}, "cpufreq.settings[0].max_khz"),
        ({"cgroups": {"groups": [{"path": "../escape", "cpu_weight": 100}]}}, "cgroups.groups[0].path"),
        ({"cgroups": {"groups": [{"path": "app", "cpu_quota_us": -5}]}}, "cgroups.groups[0].cpu_quota_us"),
        ({"extensions": {"nosuchplugin": {}}}, "extensions.nosuchplugin"),
    ],
)
def test_bad_input_is_invalid_argument_naming_the_field_and_writes_nothing(
    agent_env: Any, snap: Any, bad: dict[str, Any], field: str
) -> None:
    agent = agent_env.start()
    before = snap(agent_env.fs_root)
    # The bad section rides along with a valid one: all-or-nothing means the valid part is not written either.
    request = {**GOOD, **bad} if "extensions" in bad else {**GOOD, **bad, "cgroups": GOOD["cgroups"]} | bad
    with pytest.raises(grpc.RpcError) as err:
        agent.stub().Apply(pb.ApplyRequest(profile=profile(request)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"{field}: ")
    assert snap(agent_env.fs_root) == before
    assert not (agent_env.runtime / "journal.json").exists()


def test_apply_dry_run_then_apply_then_reapply_then_reset(agent_env: Any, snap: Any) -> None:
    agent = agent_env.start()
    stub = agent.stub()
    original = snap(agent_env.fs_root)

    planned = stub.Apply(pb.ApplyRequest(profile=profile(GOOD), dry_run=True, requester="e2e"))
    assert planned.writes_performed == 0 and planned.writes
    assert snap(agent_env.fs_root) == original

    applied = stub.Apply(pb.ApplyRequest(profile=profile(GOOD), requester="e2e"))
    assert [(w.mechanism, w.key, w.after) for w in applied.writes] == [
        (w.mechanism, w.key, w.after) for w in planned.writes
    ]
    assert applied.writes_performed == len(planned.writes) and applied.generation == 1
    assert read(agent_env, GOVERNOR) == "powersave"
    assert read(agent_env, MAX_FREQ) == "1600000"
    assert read(agent_env, APP_WEIGHT) == "200"

    again = stub.Apply(pb.ApplyRequest(profile=profile(GOOD)))
    assert (again.writes_performed, len(again.writes), again.generation) == (0, 0, 1)

    state = stub.GetState(pb.GetStateRequest())
    assert state.generation == 1 and state.drifted == 0
    knobs = {k.key: k for k in state.knobs}
    assert knobs["cpu0/scaling_governor"].original == "ondemand"
    assert json_format.MessageToDict(state.desired, preserving_proto_field_name=True) == json.loads(
        json.dumps(json_format.MessageToDict(profile(GOOD), preserving_proto_field_name=True))
    )

    reset = stub.Reset(pb.ResetRequest())
    assert reset.writes_performed > 0
    assert snap(agent_env.fs_root) == original
    assert not (agent_env.fs_root / "sys/fs/cgroup/mlsysops/app").exists()


def test_sigterm_restores_the_originals_when_configured(agent_env: Any, snap: Any) -> None:
    agent_env.write_config("restore_on_shutdown: true\n")
    agent = agent_env.start()
    original = snap(agent_env.fs_root)
    agent.stub().Apply(pb.ApplyRequest(profile=profile(GOOD)))
    assert read(agent_env, GOVERNOR) == "powersave"
    assert agent.terminate() == 0
    assert snap(agent_env.fs_root) == original
    assert not (agent_env.runtime / "journal.json").exists()
    assert not agent_env.socket.exists()


def test_by_default_a_restart_keeps_the_settings_and_readopts_them(agent_env: Any) -> None:
    """Issue 11, defect 5: a routine `systemctl restart` must not drop every limit (TuneD's
    rollback=not_on_exit); the next agent verifies and re-adopts them, and Reset still restores."""
    agent = agent_env.start()
    agent.stub().Apply(pb.ApplyRequest(profile=profile(GOOD)))
    assert agent.terminate() == 0
    assert read(agent_env, GOVERNOR) == "powersave"
    (agent_env.fs_root / GOVERNOR).write_text("ondemand\n")  # changed while no agent ran
    restarted = agent_env.start()  # the journal kept the originals
    assert read(agent_env, GOVERNOR) == "powersave"  # re-adopted
    state = restarted.stub().GetState(pb.GetStateRequest())
    assert state.generation == 1 and state.drifted == 0
    restarted.stub().Reset(pb.ResetRequest())
    assert read(agent_env, GOVERNOR) == "ondemand"


@pytest.mark.parametrize(
    ("sections", "hung_key", "restored"),
    [
        # cpufreq, cgroups and files/a are written, files/b blocks: kill -9 mid-apply.
        (GOOD, "b", 3),
        # The journal is written, the very first write blocks: kill -9 between journaling and writing.
        ({}, "a", 0),
    ],
)
def test_kill_9_during_an_apply_then_restart_and_reset(
    agent_env: Any, snap: Any, sections: dict[str, Any], hung_key: str, restored: int
) -> None:
    agent = agent_env.start()
    original = snap(agent_env.fs_root)
    values = {"a": "a1", "b": "b1", "c": "c1", hung_key: "hang"}
    call = agent.stub().Apply.future(
        pb.ApplyRequest(profile=profile({**sections, "extensions": {"e2efiles": {"values": values}}}))
    )
    marker = agent_env.fs_root / "files/.hanging"
    agent.wait(lambda: marker.read_text() == hung_key, "the plugin's hanging write")
    agent.kill9()
    assert call.exception() is not None  # the caller saw the agent die
    journaled = json.loads((agent_env.runtime / "journal.json").read_text())["originals"]
    assert {"mechanism": "e2efiles", "key": "c", "original": "c0"} in journaled  # all journaled up front

    restarted = agent_env.start()
    reset = restarted.stub().Reset(pb.ResetRequest())
    assert reset.writes_performed >= restored
    marker.write_text("")
    assert snap(agent_env.fs_root) == original
    assert not (agent_env.runtime / "journal.json").exists()


def test_a_corrupt_journal_stops_the_agent_with_a_clear_message(agent_env: Any) -> None:
    agent_env.runtime.mkdir()
    (agent_env.runtime / "journal.json").write_text("{torn")
    result = agent_env.run()
    assert result.returncode == 1
    assert "journal.json" in result.stderr and "refusing to start" in result.stderr
    assert (agent_env.runtime / "journal.json").read_text() == "{torn"


def test_events_stream_applied_and_drift_and_devices(agent_env: Any) -> None:
    agent_env.write_config("drift: {interval_s: 0.2}\n")
    agent = agent_env.start()
    stub = agent.stub()
    kinds = {pb.Event.APPLIED, pb.Event.DRIFT, pb.Event.DEVICES}
    stream = stub.WatchEvents(pb.WatchEventsRequest(kinds=sorted(kinds)))
    stream.initial_metadata()  # subscribed from here on
    received: list[pb.Event] = []
    reader = threading.Thread(target=drain, args=(stream, received), daemon=True)
    reader.start()

    stub.Apply(pb.ApplyRequest(profile=profile(GOOD), requester="e2e"))
    (agent_env.fs_root / GOVERNOR).write_text("performance")  # drift behind the agent's back
    devices = [pb.Device(id="esp-1", kind="esp32")]
    stub.ReportDevices(pb.ReportDevicesRequest(source="faredge", devices=devices))
    agent.wait(lambda: {e.kind for e in received} == kinds, "APPLIED, DRIFT and DEVICES events")
    stream.cancel()
    applied = next(e for e in received if e.kind == pb.Event.APPLIED)
    # the identity the socket proved (SO_PEERCRED), not the self-declared "e2e"
    assert applied.generation == 1 and applied.details["requester"] == f"uid:{os.getuid()}"
    drift = next(e for e in received if e.kind == pb.Event.DRIFT)
    assert (drift.mechanism, drift.key) == ("cpufreq", "cpu0/scaling_governor")
    assert read(agent_env, GOVERNOR) == "performance"  # report only: enforce is off by default

    inventory = stub.GetInventory(pb.GetInventoryRequest())
    assert [d.id for d in inventory.devices] == ["esp-1"]
    assert {m.name for m in inventory.mechanisms} >= {"cpufreq", "cgroups", "network", "e2efiles"}
    assert len(inventory.cpus) >= 2 and inventory.cpus[0].available_governors


def test_enforce_corrects_drift(agent_env: Any) -> None:
    agent_env.write_config("drift: {interval_s: 0.1, enforce: true}\n")
    agent = agent_env.start()
    agent.stub().Apply(pb.ApplyRequest(profile=profile(GOOD)))
    (agent_env.fs_root / GOVERNOR).write_text("performance")
    agent.wait(lambda: read(agent_env, GOVERNOR) == "powersave", "the drifted governor corrected")


def test_telemetry_is_retimed_live_and_bad_settings_are_rejected(agent_env: Any) -> None:
    agent = agent_env.start()
    stub = agent.stub()
    config = stub.SetTelemetryConfig(
        pb.SetTelemetryConfigRequest(collectors=[pb.Collector(name="cpu", enabled=False, interval_ms=2000)])
    )
    cpu = next(c for c in config.collectors if c.name == "cpu")
    assert (cpu.enabled, cpu.interval_ms) == (False, 2000)
    assert config.metrics_endpoint.startswith("http://127.0.0.1:")
    with pytest.raises(grpc.RpcError) as err:
        stub.SetTelemetryConfig(
            pb.SetTelemetryConfigRequest(collectors=[pb.Collector(name="gpu", interval_ms=1000)])
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "collectors[0]" in err.value.details()
    now = stub.GetTelemetryConfig(pb.GetTelemetryConfigRequest())
    assert next(c for c in now.collectors if c.name == "cpu") == cpu  # the bad call changed nothing


def test_unavailable_mechanism_is_a_failed_precondition(agent_env: Any) -> None:
    agent = agent_env.start()
    request = pb.ApplyRequest(profile=profile({"network": {"interfaces": [{"name": "lo"}]}}))
    with pytest.raises(grpc.RpcError) as err:
        agent.stub().Apply(request)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "disabled by configuration" in err.value.details()


def test_config_errors_name_the_key_and_stop_the_agent(agent_env: Any) -> None:
    agent_env.write_config("listen:\n  socket_mode: 0660\n")
    result = agent_env.run()
    assert result.returncode == 78
    assert "listen.socket_mode: expected an octal mode string like '0660'" in result.stderr
    missing = agent_env.run("--config", str(agent_env.workdir / "absent.yaml"))
    assert missing.returncode == 78 and "config file does not exist" in missing.stderr
