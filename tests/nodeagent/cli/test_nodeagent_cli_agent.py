"""The CLI against a real agent process over the real cgroup v1 tree (a private subtree), the
same set-up the benchmark uses: apply, idempotence, refusal, state, telemetry, events, reset."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner, Result

from mlsysops.testing import wait_for
from nodeagent.cli import node

CPU = Path("/sys/fs/cgroup/cpu")


@pytest.fixture(scope="module")
def real_agent(bench: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    name = f"mlsysops-clitest-{os.getpid()}"
    with (
        bench.private_cgroups(name),
        bench.running_agent(tmp_path_factory.mktemp("agent"), name, "cli-e2e") as (
            _proc,
            target,
        ),
    ):
        yield target, CPU / name


def run(target: str, *args: str) -> Result:
    return CliRunner().invoke(node, ["--target", target, *args])


def profile(tmp_path: Path, text: str) -> str:
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    return str(path)


def test_info_reports_this_node(real_agent: Any) -> None:
    target, _ = real_agent
    result = run(target, "info", "-o", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["node_name"] == "cli-e2e"
    assert data["api_version"] == "mlsysops.nodeconfig.v1"
    assert {m["name"] for m in data["mechanisms"]} >= {"cgroups"}
    assert run(target, "info").exit_code == 0


def test_apply_writes_once_refuses_bad_input_and_reset_restores(real_agent: Any, tmp_path: Path) -> None:
    target, root = real_agent
    good = profile(tmp_path, "cgroups:\n  groups:\n    - path: cli/app\n      cpu_quota_us: 50000\n")
    result = run(target, "apply", "-f", good)
    assert result.exit_code == 0, result.output
    quota = root / "cli/app/cpu.cfs_quota_us"
    assert quota.read_text().strip() == "50000"
    assert "cgroups" in result.output and "50000" in result.output

    again = run(target, "apply", "-f", good)
    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[-1].startswith("0 writes performed")

    bad = profile(
        tmp_path, "cgroups:\n  groups:\n    - path: cli/app\n      cpu_quota_us: 70000\n    - path: ../x\n"
    )
    refused = run(target, "apply", "-f", bad)
    assert refused.exit_code == 2, refused.output
    assert "cgroups.groups[1].path" in refused.output
    assert quota.read_text().strip() == "50000"  # nothing at all was written

    state = run(target, "state", "-o", "json")
    knobs = {k["key"]: k for k in json.loads(state.output)["knobs"]}
    assert any(k.endswith("cpu.cfs_quota_us") and v["actual"] == "50000" for k, v in knobs.items())

    reset = run(target, "reset")
    assert reset.exit_code == 0, reset.output
    assert not quota.exists() or quota.read_text().strip() == "-1"


def test_telemetry_is_retimed_live_and_metrics_pass_promtool(real_agent: Any) -> None:
    target, _ = real_agent
    result = run(target, "telemetry", "set", "cpu", "--interval", "500ms", "-o", "json")
    assert result.exit_code == 0, result.output
    config = json.loads(result.output)
    cpu = next(c for c in config["collectors"] if c["name"] == "cpu")
    assert cpu["interval_ms"] == 500 and cpu["enabled"] is True
    refused = run(target, "telemetry", "set", "cpu", "--interval", "50ms")
    assert refused.exit_code == 2 and "interval_ms" in refused.output
    endpoint = config["metrics_endpoint"]
    if not endpoint:
        pytest.skip("the agent serves no /metrics endpoint")
    with urllib.request.urlopen(endpoint, timeout=5) as resp:
        body = resp.read()
    assert b"mlsysops_nodeagent_cpu_seconds_total" in body
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False
    )
    assert check.returncode == 0, (check.stdout + check.stderr).decode()


def test_events_stream_shows_applies(real_agent: Any, tmp_path: Path) -> None:
    """The follower runs as its own process (CliRunner swaps sys.stdout: not thread-safe)."""
    target, _ = real_agent
    cli = [sys.executable, "-c", "from mlsysops.cli import main; main()"]
    args = ["node", "--target", target, "events", "--kind", "applied", "--count", "1", "-o", "json"]
    follower = subprocess.Popen([*cli, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    quotas = iter(range(31_000, 10**9, 1000))

    def apply_until_seen() -> bool:
        """One more apply, then whether the follower has seen one (and exited)."""
        text = f"cgroups:\n  groups:\n    - path: cli/events\n      cpu_quota_us: {next(quotas)}\n"
        assert run(target, "apply", "-f", profile(tmp_path, text)).exit_code == 0
        with contextlib.suppress(subprocess.TimeoutExpired):
            follower.wait(0.2)
        return follower.poll() is not None

    try:
        wait_for(apply_until_seen, 30, "the follower to print an APPLIED event", interval=0)
        out, err = follower.communicate(timeout=10)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0, err
    event = json.loads(out.splitlines()[0])
    assert event["kind"] == "APPLIED"
    assert run(target, "reset").exit_code == 0
