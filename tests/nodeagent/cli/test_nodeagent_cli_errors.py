"""Bad input is refused with a clear message and exit code 2, before anything is sent; agent
errors map to one message and exit code per gRPC status."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import click
import grpc
import pytest
from click.testing import CliRunner, Result

from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb
from nodeagent.cli import node, parse_interval
from nodeagent.profile_file import load_profile


def run(agent: Any, *args: str) -> Result:
    return CliRunner().invoke(node, ["--target", agent.target, *args])


def apply_text(agent: Any, tmp_path: Path, text: str | bytes) -> Result:
    profile = tmp_path / "profile.yaml"
    if isinstance(text, bytes):
        profile.write_bytes(text)
    else:
        profile.write_text(text)
    return run(agent, "apply", "-f", str(profile))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cgroups: [unclosed", "is not valid YAML at line 1"),
        ("", "a profile is a YAML mapping (cpufreq, cgroups, network), not an empty file"),
        ("- cgroups", "not a list"),
        (
            "cgroups:\n  groups:\n    - path: a\n    - path: b\n      foo: 1",
            "cgroups.groups[1].foo: unknown field",
        ),
        ("cgroups:\n  groups:\n    - path: a\n      cpu_quota_us: lots", "cgroups.groups[0].cpu_quota_us: "),
        ("cpufreq:\n  settings:\n    - max_khz: -5", "cpufreq.settings[0].max_khz: Value out of range: -5"),
        ("cgroups:\n  groups: app", "cgroups.groups: must be a list, not str"),
        ("cgroups:\n  groups:\n    - 5", "cgroups.groups[0]: must be a mapping, not int"),
        ("network:\n  interfaces:\n    - name: x\n      htb: {}\n      tbf: {}", "network.interfaces[0]: "),
        ("colour: blue", "colour: unknown field (known: cpufreq, cgroups, network, extensions)"),
        (b"\xff\xfe\x00binary", "is not a text file"),
    ],
)
def test_bad_profiles_are_refused_naming_the_field_and_nothing_is_sent(
    agent: Any, tmp_path: Path, text: str | bytes, message: str
) -> None:
    result = apply_text(agent, tmp_path, text)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert result.output.startswith(f"Error: {tmp_path / 'profile.yaml'}")
    assert agent.requests == []


def test_a_missing_profile_file_is_exit_2_and_sends_nothing(agent: Any, tmp_path: Path) -> None:
    result = run(agent, "apply", "-f", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert "cannot read profile" in result.output and "No such file or directory" in result.output
    assert agent.requests == []


def test_camel_case_json_names_are_accepted_as_protobuf_does(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("cgroups:\n  groups:\n    - path: app\n      cpuQuotaUs: 20000\n")
    assert load_profile(profile).cgroups.groups[0].cpu_quota_us == 20000


@pytest.mark.parametrize(
    ("code", "exit_code", "message"),
    [
        (
            grpc.StatusCode.INVALID_ARGUMENT,
            2,
            "rejected by the agent, nothing was changed: cgroups.groups[0].path: must be relative",
        ),
        (grpc.StatusCode.FAILED_PRECONDITION, 4, "not possible on this node: "),
        (grpc.StatusCode.INTERNAL, 1, "the agent failed (INTERNAL): "),
        (grpc.StatusCode.PERMISSION_DENIED, 5, "permission denied by the agent at unix:"),
    ],
)
def test_agent_errors_map_to_one_message_and_exit_code(
    agent: Any, tmp_path: Path, code: grpc.StatusCode, exit_code: int, message: str
) -> None:
    agent.fail = (code, "cgroups.groups[0].path: must be relative to the cgroup root, not absolute")
    result = apply_text(agent, tmp_path, "cgroups:\n  groups:\n    - path: /etc\n")
    assert result.exit_code == exit_code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_an_unreachable_agent_names_the_target_with_exit_3() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        target = f"unix:{tmp}/absent.sock"
        result = CliRunner().invoke(node, ["--target", target, "--timeout", "2", "info"])
    assert result.exit_code == 3, result.output
    assert f"the node agent is not reachable at {target}" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "nohost", "info"], "neither unix:PATH nor host:port"),
        (["--target", "/run/x.sock", "info"], "write unix:/run/x.sock"),
        (["--target", "host:99999", "info"], "neither unix:PATH nor host:port"),
        (["--target", "unix:/x.sock", "--tls-ca", "ca.pem", "info"], "TLS is for TCP targets"),
        (["--target", "h:1", "--tls-cert", "c.pem", "info"], "--tls-cert and --tls-key go together"),
        (["--target", "h:1", "--tls-ca", "/nonexistent/ca.pem", "info"], "cannot read the TLS CA"),
    ],
)
def test_bad_targets_and_tls_options_are_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(node, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_telemetry_set_refuses_bad_input_before_changing_anything(agent: Any) -> None:
    for args, message in (
        (["telemetry", "set", "cpu"], "nothing to change"),
        (["telemetry", "set", "cpu", "--interval", "5"], "'5' is not a duration"),
        (["telemetry", "set", "gpu", "--enable"], "unknown collector 'gpu' (known: cpu, memory)"),
    ):
        result = run(agent, *args)
        assert result.exit_code == 2, result.output
        assert message in result.output
    assert agent.sent("SetTelemetryConfig") == []


def test_events_kind_must_be_known(agent: Any) -> None:
    result = run(agent, "events", "--kind", "weather")
    assert result.exit_code == 2 and "weather" in result.output
    assert agent.requests == []


@pytest.mark.parametrize(
    ("text", "ms"), [("500ms", 500), ("5s", 5000), ("1.5s", 1500), ("2m", 120_000), ("1h", 3_600_000)]
)
def test_parse_interval(text: str, ms: int) -> None:
    assert parse_interval(text) == ms


@pytest.mark.parametrize("text", ["5", "fast", "-1s", "5 minutes", ""])
def test_parse_interval_refuses_ambiguous_or_malformed(text: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_interval(text)


def test_profiles_round_trip_through_the_proto_mapping(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "network:\n  interfaces:\n    - name: eth1\n      tbf: {rate: 1mbit, burst: 32kb, latency: 50ms}\n"
    )
    assert load_profile(profile) == pb.Profile(
        network=pb.NetworkProfile(
            interfaces=[
                pb.InterfaceShaping(name="eth1", tbf=pb.TbfQdisc(rate="1mbit", burst="32kb", latency="50ms"))
            ]
        )
    )
