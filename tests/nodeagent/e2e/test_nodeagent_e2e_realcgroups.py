"""End to end on the machine's real cgroupfs (v1 cpu/cpuset/memory here), in a private subtree."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb

CGROUPS = Path("/sys/fs/cgroup")
PROFILE = {
    "cgroups": {
        "groups": [
            {"path": "app", "cpu_quota_us": 50000, "cpu_period_us": 100000, "memory_max_bytes": 268435456}
        ]
    }
}


@pytest.fixture
def cgroup_root() -> Iterator[str]:
    if os.geteuid() != 0 or not (CGROUPS / "cpu" / "cpu.cfs_quota_us").exists():
        pytest.skip("needs root and a cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu")
    name = f"mlsysops-e2e-{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:  # whatever a failed test left behind: children first
        for hierarchy in [CGROUPS, *(p for p in CGROUPS.iterdir() if p.is_dir())]:
            for dirpath, _dirs, _files in sorted(os.walk(hierarchy / name), key=lambda w: -len(w[0])):
                os.rmdir(dirpath)


def test_apply_reapply_and_sigterm_on_the_real_v1_hierarchy(agent_env: Any, cgroup_root: str) -> None:
    agent_env.write_config(f"host: {{cgroup_root: {cgroup_root}}}\nrestore_on_shutdown: true\n")
    agent = agent_env.start("--fs-root", "/", "--simulate", "cpufreq")
    stub = agent.stub()
    app = CGROUPS / "cpu" / cgroup_root / "app"

    bad = {"cgroups": {"groups": [{"path": "app", "cpu_quota_us": 50000}, {"path": "/etc", "cpu_weight": 5}]}}
    with pytest.raises(grpc.RpcError) as err:
        stub.Apply(pb.ApplyRequest(profile=json_format.ParseDict(bad, pb.Profile())))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("cgroups.groups[1].path: ")
    assert not (CGROUPS / "cpu" / cgroup_root).exists()  # the valid group was not created either

    request = pb.ApplyRequest(profile=json_format.ParseDict(PROFILE, pb.Profile()))
    assert stub.Apply(request).writes_performed > 0
    assert (app / "cpu.cfs_quota_us").read_text().strip() == "50000"
    limit = CGROUPS / "memory" / cgroup_root / "app" / "memory.limit_in_bytes"
    assert limit.read_text().strip() == "268435456"
    assert stub.Apply(request).writes_performed == 0

    assert agent.terminate() == 0
    assert not (CGROUPS / "cpu" / cgroup_root).exists()  # created by the agent, so removed on restore
