"""Issue 11, defect 8: an idle agent does not load pyroute2 (~10 MiB); a network request does."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from nodeagent.host.lazynetlink import sysfs_links


def test_pyroute2_loads_with_the_first_network_request_not_before(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys
        from tests.nodeagent.hostile.conftest import start_agent
        from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb
        from nodeagent.api.convert import dict_to_profile
        from pathlib import Path
        live = start_agent(Path({str(tmp_path)!r}), mechanisms={{"network": {{"enabled": True}}}})
        inventory = live.stub.GetInventory(pb.GetInventoryRequest(), timeout=30)
        network = next(m for m in inventory.mechanisms if m.name == "network")
        names = [i.name for i in inventory.network.interfaces]
        print("idle", "pyroute2" in sys.modules, network.available, "lo" in names)
        profile = dict_to_profile({{"network": {{"interfaces": [{{"name": "lo", "tbf": {{
            "rate": "1gbit", "burst": "256kb", "latency": "10ms"}}}}]}}}})
        live.stub.Apply(pb.ApplyRequest(profile=profile, dry_run=True), timeout=30)
        print("shaping", "pyroute2" in sys.modules)
        live.agent.stop()
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=Path.cwd()
    )
    assert done.stdout.split("\n")[:2] == ["idle False True True", "shaping True"], done.stderr[-3000:]


def test_own_namespace_interfaces_come_from_sysfs(tmp_path: Path) -> None:
    lo = tmp_path / "lo"
    lo.mkdir()
    for name, value in (("ifindex", "1\n"), ("mtu", "65536\n"), ("operstate", "unknown\n")):
        (lo / name).write_text(value)
    (link,) = sysfs_links(tmp_path)
    assert (link.name, link.netns, link.index, link.mtu, link.state, link.root_qdisc) == (
        "lo", "", 1, 65536, "unknown", ""
    )
