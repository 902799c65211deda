"""`mlsysops node` verbs against an in-process agent: what is shown, and what is sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb
from nodeagent.cli import node

PROFILE = """
cgroups:
  groups:
    - path: app
      cpu_quota_us: 50000
      cpu_period_us: 100000
cpufreq:
  settings:
    - cpus: "0-1"
      governor: performance
network:
  interfaces:
    - name: veth0
      netns: demo
      htb: {default_class: 10, classes: [{minor: 10, rate: 10mbit}]}
"""


def run(agent: Any, *args: str) -> Result:
    return CliRunner().invoke(node, ["--target", agent.target, *args])


def test_info_shows_node_cpus_cgroups_interfaces_and_unsupported_features(agent: Any) -> None:
    result = run(agent, "info")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["NODE", "ARCH", "MEMORY", "AGENT", "API"]
    assert lines[1].split()[:2] == ["edge-1", "x86_64"] and "8.0 GiB" in lines[1]
    assert any(line.split()[:3] == ["0", "powersave", "800"] for line in lines)
    assert any(line.split()[:3] == ["1", "no", "cpufreq"] for line in lines)
    assert "cgroup hybrid, root mlsysops" in result.output
    assert any(line.split() == ["veth0", "demo", "up", "1500", "htb"] for line in lines)
    assert any(line.startswith("qdisc/netem") and "sch_netem not available" in line for line in lines)


def test_info_json_is_the_proto_mapping_with_field_names(agent: Any) -> None:
    result = run(agent, "info", "-o", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["node_name"] == "edge-1"
    assert data["cpus"][0]["available_governors"] == ["performance", "powersave"]
    assert data["cpus"][1]["cpufreq_available"] is False  # defaults are printed, not dropped


def test_state_shows_desired_actual_original_and_drift(agent: Any) -> None:
    result = run(agent, "state")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("generation 3, 1 drifted, last apply 2023-11-14T22:13:20")
    assert lines[1].split() == ["MECHANISM", "KEY", "DESIRED", "ACTUAL", "ORIGINAL", "DRIFTED"]
    assert lines[2].split() == ["cgroups", "app/cpu.cfs_quota_us", "50000", "20000", "-1", "yes"]
    assert lines[3].split() == ["cpufreq", "cpu0/scaling_governor", "performance", "performance", "-"]


def test_state_yaml(agent: Any) -> None:
    result = run(agent, "state", "-o", "yaml")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["knobs"][0]["drifted"] is True


def test_apply_sends_the_parsed_profile_and_lists_the_writes(agent: Any, tmp_path: Path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    result = run(agent, "apply", "-f", str(profile))
    assert result.exit_code == 0, result.output
    (request,) = agent.sent("Apply")
    assert not request.dry_run and request.requester == "cli"
    assert request.profile.cgroups.groups[0].cpu_quota_us == 50000
    assert request.profile.cpufreq.settings[0].governor == "performance"
    assert request.profile.network.interfaces[0].htb.classes[0].rate == "10mbit"
    lines = result.output.splitlines()
    assert lines[0].split() == ["MECHANISM", "KEY", "BEFORE", "AFTER"]
    assert lines[1].split() == ["cgroups", "app/cpu.cfs_quota_us", "-1", "50000"]
    assert lines[2].split() == ["cgroups", "app", "-", "directory"]  # absent before: created
    assert lines[-1] == "2 writes performed, generation 4"


def test_apply_dry_run_says_nothing_was_written(agent: Any, tmp_path: Path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(PROFILE)
    result = run(agent, "apply", "-f", str(profile), "--dry-run", "-o", "json")
    assert result.exit_code == 0, result.output
    assert agent.sent("Apply")[0].dry_run
    assert json.loads(result.output)["writes_performed"] == 0
    table = run(agent, "apply", "-f", str(profile), "--dry-run")
    assert table.output.splitlines()[-1] == "dry run: 2 writes planned, nothing written"


def test_reset_and_reset_dry_run(agent: Any) -> None:
    result = run(agent, "reset")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "1 writes performed: originals restored"
    dry = run(agent, "reset", "--dry-run")
    assert dry.output.splitlines()[-1] == "dry run: 1 writes planned, nothing written"
    assert [r.dry_run for r in agent.sent("Reset")] == [False, True]


def test_telemetry_without_subcommand_shows_collectors_and_endpoint(agent: Any) -> None:
    result = run(agent, "telemetry")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["COLLECTOR", "ENABLED", "INTERVAL"]
    assert lines[1].split() == ["cpu", "on", "10s"]
    assert lines[-1] == "metrics endpoint: http://127.0.0.1:9465/metrics"


def test_telemetry_set_changes_only_what_is_given(agent: Any) -> None:
    result = run(agent, "telemetry", "set", "memory", "--disable")
    assert result.exit_code == 0, result.output
    (request,) = agent.sent("SetTelemetryConfig")
    assert list(request.collectors) == [pb.Collector(name="memory", enabled=False, interval_ms=10_000)]
    assert any(line.split() == ["memory", "off", "10s"] for line in result.output.splitlines())
    result = run(agent, "telemetry", "set", "cpu", "--interval", "1.5s", "-o", "json")
    assert result.exit_code == 0, result.output
    assert agent.sent("SetTelemetryConfig")[1].collectors[0] == pb.Collector(
        name="cpu", enabled=True, interval_ms=1500
    )
    assert json.loads(result.output)["collectors"][0]["interval_ms"] == 1500


def test_events_follow_with_kind_filter_count_and_json_lines(agent: Any) -> None:
    agent.events = [
        pb.Event(kind=pb.Event.APPLIED, key="", message="applied generation 3", generation=3),
        pb.Event(
            kind=pb.Event.DRIFT, mechanism="cgroups", key="app/cpu.cfs_quota_us", message="20000 != 50000"
        ),
        pb.Event(kind=pb.Event.DRIFT, mechanism="cgroups", key="app/cpu.shares", message="2 != 1024"),
    ]
    result = run(agent, "events", "--kind", "drift", "--count", "1", "-o", "json")
    assert result.exit_code == 0, result.output
    assert list(agent.sent("WatchEvents")[0].kinds) == [pb.Event.DRIFT]
    (line,) = result.output.splitlines()
    assert json.loads(line)["key"] == "app/cpu.cfs_quota_us"
    table = run(agent, "events")
    assert table.exit_code == 0, table.output
    rows = table.output.splitlines()
    assert rows[0].split() == ["TIME", "KIND", "MECHANISM", "KEY", "GEN", "MESSAGE"]
    assert rows[1].split()[:3] == ["-", "applied", "-"] and rows[1].endswith("applied generation 3")
    assert len(rows) == 4


def test_target_comes_from_the_environment_when_not_given(agent: Any) -> None:
    result = CliRunner().invoke(node, ["state"], env={"MLSYSOPS_NODEAGENT": agent.target})
    assert result.exit_code == 0, result.output
    assert agent.sent("GetState")
