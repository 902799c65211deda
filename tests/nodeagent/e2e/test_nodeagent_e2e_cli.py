"""End to end through the operator's CLI (`mlsysops node ...`) against a real agent process."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

PROFILE = """\
cpufreq:
  settings:
    - {cpus: "0", governor: powersave}
cgroups:
  groups:
    - {path: web, cpu_weight: 300}
"""


def mlsysops(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    cli = [sys.executable, "-c", "from mlsysops.cli import main; main()", "node", "--target", target]
    return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=60)


def test_apply_state_and_reset_through_the_cli(agent_env: Any, snap: Any) -> None:
    agent = agent_env.start()
    original = snap(agent_env.fs_root)
    profile = agent_env.workdir / "profile.yaml"
    profile.write_text(PROFILE)

    planned = mlsysops(agent.target, "apply", "-f", str(profile), "--dry-run", "-o", "json")
    assert planned.returncode == 0, planned.stderr
    assert snap(agent_env.fs_root) == original
    applied = json.loads(mlsysops(agent.target, "apply", "-f", str(profile), "-o", "json").stdout)
    assert applied["writes"] == json.loads(planned.stdout)["writes"]
    again = json.loads(mlsysops(agent.target, "apply", "-f", str(profile), "-o", "json").stdout)
    assert again.get("writes_performed", 0) == 0

    state = json.loads(mlsysops(agent.target, "state", "-o", "json").stdout)
    governor = next(k for k in state["knobs"] if k["key"] == "cpu0/scaling_governor")
    assert [governor[k] for k in ("desired", "actual", "original")] == ["powersave", "powersave", "ondemand"]

    profile.write_text(PROFILE.replace("powersave", "turbo"))
    bad = mlsysops(agent.target, "apply", "-f", str(profile))
    assert bad.returncode == 2 and "cpufreq.settings[0].governor" in bad.stderr

    assert mlsysops(agent.target, "reset").returncode == 0
    assert snap(agent_env.fs_root) == original
