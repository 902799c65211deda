"""cgroups mechanism against the REAL cgroupfs of this machine.

Here cpu, cpuset and memory are bound to v1 hierarchies under /sys/fs/cgroup/<controller> and a
cgroup2 mount at /sys/fs/cgroup/unified offers only hugetlb. Every test works below a unique
root (`real_cgroup_root`) that the fixture removes in every hierarchy, whatever happens.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodeagent.errors import InvalidSpec, Unsupported
from nodeagent.host import cpulist
from nodeagent.host.fs import HostFS
from nodeagent.mechanisms.base import MechanismContext
from nodeagent.mechanisms.cgroup_knobs import weight_to_shares
from nodeagent.mechanisms.cgroups import CgroupsMechanism

CG = Path("/sys/fs/cgroup")
GROUP = {
    "path": "demo/app",
    "cpu_quota_us": 50000,
    "cpu_period_us": 100000,
    "cpu_weight": 100,
    "cpuset_cpus": "0",
    "cpuset_mems": "0",
    "memory_max_bytes": 268435456,
}


def mech(root: str, mount: str = "sys/fs/cgroup") -> CgroupsMechanism:
    return CgroupsMechanism(MechanismContext(fs=HostFS("/"), cgroup_mount=mount, cgroup_root=root))


def kernel(path: Path) -> str:
    return path.read_text().strip()


def host_cpus() -> str:
    return kernel(CG / "cpuset" / "cpuset.effective_cpus")


@pytest.fixture
def v1(real_cgroup_root: str) -> str:
    for controller in ("cpu", "cpuset", "memory"):
        if not (CG / controller / "cgroup.procs").exists():
            pytest.skip(f"the {controller} controller is not on a v1 hierarchy here")
    return real_cgroup_root


@pytest.fixture
def v1_smp(v1: str) -> str:
    """The v1 root, on a machine with at least two CPUs (cpuset moves need somewhere to go)."""
    if len(cpulist.parse(host_cpus())) < 2:
        pytest.skip("needs at least two CPUs")
    return v1


def test_probe_sees_the_hybrid_layout(v1: str) -> None:
    details = mech(v1).probe().details
    assert details is not None
    by_name = {c["name"]: c for c in details["controllers"]}
    assert by_name["cpu"] == {"name": "cpu", "version": "v1", "mount": "/sys/fs/cgroup/cpu"}
    assert by_name["memory"]["version"] == "v1"
    if (CG / "unified" / "cgroup.controllers").exists():
        assert details["version"] == "hybrid"
        assert "cpu" not in [c["name"] for c in details["controllers"] if c["version"] == "v2"]


def test_v1_apply_read_back_reapply_and_reset(v1: str, engine: Any) -> None:
    flow = engine(mech(v1))
    flow.apply({"groups": [GROUP]})
    app = f"{v1}/demo/app"
    assert kernel(CG / "cpu" / app / "cpu.cfs_quota_us") == "50000"
    assert kernel(CG / "cpu" / app / "cpu.cfs_period_us") == "100000"
    assert kernel(CG / "cpu" / app / "cpu.shares") == str(weight_to_shares(100))
    assert kernel(CG / "cpuset" / app / "cpuset.cpus") == "0"
    assert kernel(CG / "cpuset" / app / "cpuset.mems") == "0"
    assert kernel(CG / "memory" / app / "memory.limit_in_bytes") == "268435456"
    # created v1 cpuset parents got their parent's sets, or no task could ever join the child
    assert kernel(CG / "cpuset" / v1 / "cpuset.cpus") == host_cpus()
    assert kernel(CG / "cpuset" / v1 / "demo" / "cpuset.mems") == kernel(
        CG / "cpuset" / "cpuset.effective_mems"
    )
    assert flow.plan({"groups": [GROUP]}) == []

    flow.reset()
    for hierarchy in ("cpu", "cpuset", "memory", "unified"):
        assert not (CG / hierarchy / v1).exists()


def test_v1_unlimited_values_read_back_canonically(v1: str, engine: Any) -> None:
    flow = engine(mech(v1))
    flow.apply({"groups": [{"path": "g", "cpu_quota_us": 20000, "memory_max_bytes": 64 << 20}]})
    unlimited = {"groups": [{"path": "g", "cpu_quota_us": -1, "memory_max_bytes": -1}]}
    writes = flow.apply(unlimited)
    assert {(w.key.rsplit("/", 1)[1], w.after) for w in writes} == {
        ("cpu.cfs_quota_us", "max"),
        ("memory.limit_in_bytes", "max"),
    }
    assert kernel(CG / "cpu" / v1 / "g" / "cpu.cfs_quota_us") == "-1"
    assert (
        int(kernel(CG / "memory" / v1 / "g" / "memory.limit_in_bytes")) > 1 << 62
    )  # the kernel's "unlimited"
    assert flow.plan(unlimited) == []
    flow.reset()


def test_v1_cpuset_parent_and_child_move_in_a_kernel_accepted_order(v1_smp: str, engine: Any) -> None:
    flow = engine(mech(v1_smp))
    flow.apply({"groups": [{"path": "a", "cpuset_cpus": "0-1"}, {"path": "a/b", "cpuset_cpus": "0-1"}]})
    # narrowing both: v1 refuses a parent that no longer contains its child, so the child goes first
    flow.apply({"groups": [{"path": "a", "cpuset_cpus": "1"}, {"path": "a/b", "cpuset_cpus": "1"}]})
    assert kernel(CG / "cpuset" / v1_smp / "a" / "b" / "cpuset.cpus") == "1"
    # widening both: parent first
    flow.apply({"groups": [{"path": "a", "cpuset_cpus": "0-1"}, {"path": "a/b", "cpuset_cpus": "0-1"}]})
    assert kernel(CG / "cpuset" / v1_smp / "a" / "b" / "cpuset.cpus") == "0-1"
    flow.reset()
    assert not (CG / "cpuset" / v1_smp).exists()


def test_v1_child_outside_an_existing_parent_is_refused(v1: str, engine: Any) -> None:
    flow = engine(mech(v1))
    flow.apply({"groups": [{"path": "a", "cpuset_cpus": "0"}]})
    try:
        with pytest.raises(InvalidSpec, match="not within the parent's effective cpus '0'") as err:
            mech(v1).validate({"groups": [{"path": "a/b", "cpuset_cpus": "1"}]}, "cgroups")
        assert err.value.field == "cgroups.groups[0].cpuset_cpus"
        with pytest.raises(InvalidSpec, match="admits no task"):
            mech(v1).validate({"groups": [{"path": "a/b", "cpuset_cpus": ""}]}, "cgroups")
        assert not (CG / "cpuset" / v1 / "a" / "b").exists()
    finally:
        flow.reset()


def test_v1_bad_input_writes_nothing(v1: str) -> None:
    before = {h: (CG / h / v1).exists() for h in ("cpu", "cpuset", "memory", "unified")}
    for group in (
        {"path": "g", "cpu_quota_us": -7},
        {"path": "../g"},
        {"path": "g", "cpuset_cpus": "0-4095"},
    ):
        with pytest.raises(InvalidSpec):
            mech(v1).validate({"groups": [{"path": "ok", "cpu_weight": 3}, group]}, "cgroups")
    assert {h: (CG / h / v1).exists() for h in before} == before == dict.fromkeys(before, False)


@pytest.fixture
def unified() -> str:
    if not (CG / "unified" / "cgroup.controllers").exists():
        pytest.skip("no cgroup2 mount at /sys/fs/cgroup/unified on this machine")
    return "sys/fs/cgroup/unified"


def test_real_cgroup2_mount_is_detected_with_what_it_offers(real_cgroup_root: str, unified: str) -> None:
    details = mech(real_cgroup_root, mount=unified).probe().details
    assert details is not None
    assert details["version"] == "v2"
    offered = kernel(CG / "unified" / "cgroup.controllers").split()
    assert sorted(c["name"] for c in details["controllers"]) == sorted(offered)


def test_real_cgroup2_group_is_created_and_removed(real_cgroup_root: str, unified: str, engine: Any) -> None:
    flow = engine(mech(real_cgroup_root, mount=unified))
    flow.apply({"groups": [{"path": "demo/app"}]})
    group = CG / "unified" / real_cgroup_root / "demo" / "app"
    assert (group / "cgroup.controllers").exists()  # the kernel populated the new group
    assert flow.plan({"groups": [{"path": "demo/app"}]}) == []
    flow.reset()
    assert not (CG / "unified" / real_cgroup_root).exists()


def test_real_cgroup2_without_the_cpu_controller_is_unsupported(real_cgroup_root: str, unified: str) -> None:
    if "cpu" in kernel(CG / "unified" / "cgroup.controllers").split():
        pytest.skip("this cgroup2 mount offers cpu")
    with pytest.raises(Unsupported, match="cpu controller is not available"):
        mech(real_cgroup_root, mount=unified).validate(
            {"groups": [{"path": "g", "cpu_weight": 5}]}, "cgroups"
        )
    assert not (CG / "unified" / real_cgroup_root).exists()


def kernel_refuses(path: Path, value: str) -> bool:
    """The oracle: does the real kernel refuse this write? (restores nothing: use on a refusal)"""
    try:
        path.write_text(value)
    except OSError:
        return True
    return False


def test_v1_new_parent_with_a_short_period_gets_it_before_its_quota(v1: str, engine: Any) -> None:
    """Regression (found by the property test below): a's quota of 50000 us written before its
    period of 1000 us briefly limits a to half a CPU, below b's two CPUs, and the kernel refused
    b's quota. Shortening a period widens the ratio, so it goes first, parents first."""
    flow = engine(mech(v1))
    try:
        profile = {"groups": [{"path": "a", "cpu_quota_us": 50000, "cpu_period_us": 1000},
                              {"path": "a/b", "cpu_quota_us": 200000}]}
        flow.apply(profile)
        assert kernel(CG / "cpu" / v1 / "a" / "cpu.cfs_period_us") == "1000"
        assert kernel(CG / "cpu" / v1 / "a" / "b" / "cpu.cfs_quota_us") == "200000"
    finally:
        flow.reset()


def test_v1_child_quota_above_its_parent_is_refused_like_the_kernel(v1: str, engine: Any) -> None:
    flow = engine(mech(v1))
    flow.apply({"groups": [{"path": "a", "cpu_quota_us": 50000}, {"path": "a/b"}]})
    try:
        with pytest.raises(InvalidSpec, match="exceeds the quota/period of the ancestor 'a'") as err:
            mech(v1).validate({"groups": [{"path": "a/b", "cpu_quota_us": 60000}]}, "cgroups")
        assert err.value.field == "cgroups.groups[0].cpu_quota_us"
        assert kernel_refuses(CG / "cpu" / v1 / "a" / "b" / "cpu.cfs_quota_us", "60000")
        # a deeper group is bounded by its nearest limited ancestor, through an unlimited one
        with pytest.raises(InvalidSpec, match="ancestor 'a'"):
            mech(v1).validate({"groups": [{"path": "a/b/c", "cpu_quota_us": 70000}]}, "cgroups")
        # raising both in one profile is fine: the parent is planned (and written) first
        writes = flow.apply(
            {"groups": [{"path": "a", "cpu_quota_us": 90000}, {"path": "a/b", "cpu_quota_us": 80000}]}
        )
        assert [w.after for w in writes] == ["90000", "80000"]
    finally:
        flow.reset()


def test_v1_parent_quota_below_a_child_is_refused_like_the_kernel(v1: str, engine: Any) -> None:
    flow = engine(mech(v1))
    flow.apply({"groups": [{"path": "a", "cpu_quota_us": 80000}, {"path": "a/b", "cpu_quota_us": 60000}]})
    try:
        with pytest.raises(InvalidSpec, match="below the quota/period of the child group 'b'") as err:
            mech(v1).validate({"groups": [{"path": "a", "cpu_quota_us": 50000}]}, "cgroups")
        assert err.value.field == "cgroups.groups[0].cpu_quota_us"
        assert kernel_refuses(CG / "cpu" / v1 / "a" / "cpu.cfs_quota_us", "50000")
        # lowering both: the child goes first, so every step is accepted
        writes = flow.apply(
            {"groups": [{"path": "a", "cpu_quota_us": 30000}, {"path": "a/b", "cpu_quota_us": 20000}]}
        )
        assert [w.key.split("/")[-2] for w in writes] == ["b", "a"]
    finally:
        flow.reset()


def test_v1_parent_cpuset_narrowed_below_a_child_is_refused_like_the_kernel(v1_smp: str, engine: Any) -> None:
    flow = engine(mech(v1_smp))
    flow.apply({"groups": [{"path": "a", "cpuset_cpus": "0-1"}, {"path": "a/b", "cpuset_cpus": "1"}]})
    try:
        with pytest.raises(InvalidSpec, match="would not contain '1' of the child group 'b'") as err:
            mech(v1_smp).validate({"groups": [{"path": "a", "cpuset_cpus": "0"}]}, "cgroups")
        assert err.value.field == "cgroups.groups[0].cpuset_cpus"
        assert kernel_refuses(CG / "cpuset" / v1_smp / "a" / "cpuset.cpus", "0")
    finally:
        flow.reset()


def test_v1_cpuset_move_impossible_in_one_apply_is_refused_before_writing(v1_smp: str, engine: Any) -> None:
    flow = engine(mech(v1_smp))
    flow.apply({"groups": [{"path": "a", "cpuset_cpus": "0"}, {"path": "a/b", "cpuset_cpus": "0"}]})
    try:
        move = {"groups": [{"path": "a", "cpuset_cpus": "1"}, {"path": "a/b", "cpuset_cpus": "1"}]}
        with pytest.raises(InvalidSpec, match="cgroup v1 requires a parent's cpuset to contain"):
            mech(v1_smp).validate(move, "cgroups")
        assert kernel_refuses(CG / "cpuset" / v1_smp / "a" / "cpuset.cpus", "1")  # parent first: EBUSY
        assert kernel_refuses(CG / "cpuset" / v1_smp / "a" / "b" / "cpuset.cpus", "1")  # child first: EACCES
        flow.apply({"groups": [{"path": "a", "cpuset_cpus": "0-1"}]})  # the two-step way works
        flow.apply(move)
        assert kernel(CG / "cpuset" / v1_smp / "a" / "b" / "cpuset.cpus") == "1"
    finally:
        flow.reset()


V1_GROUPS = st.builds(
    dict,
    path=st.sampled_from(("a", "a/b")),
    cpuset_cpus=st.one_of(st.none(), st.sampled_from(["0", "1", "0-1", ""])),
    cpu_quota_us=st.one_of(st.none(), st.sampled_from([-1, 1000, 50000, 200000])),
    cpu_period_us=st.one_of(st.none(), st.sampled_from([1000, 100000])),
    memory_max_bytes=st.one_of(st.none(), st.sampled_from([-1, 1 << 20, 64 << 20])),
).map(lambda g: {k: v for k, v in g.items() if v is not None})
V1_PROFILES = st.lists(V1_GROUPS, max_size=2).map(
    lambda gs: {"groups": list({g["path"]: g for g in gs}.values())}
)
V1_FILES = (
    "cpu.cfs_quota_us",
    "cpu.cfs_period_us",
    "cpu.shares",
    "cpuset.cpus",
    "cpuset.mems",
    "memory.limit_in_bytes",
)


def v1_state(root: str) -> dict[str, str]:
    """Our subtree in every hierarchy: its groups and the values of the files we manage."""
    state: dict[str, str] = {}
    for hierarchy in ("cpu", "cpuset", "memory", "unified"):
        for dirpath, _, files in os.walk(CG / hierarchy / root):
            state[dirpath] = "<group>"
            state.update({f"{dirpath}/{f}": kernel(Path(dirpath) / f) for f in files if f in V1_FILES})
    return state


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(profiles=st.lists(V1_PROFILES, min_size=1, max_size=3))
def test_v1_kernel_accepts_every_write_of_every_valid_profile(
    v1_smp: str, engine: Any, profiles: list[dict]
) -> None:
    """The real kernel as oracle: whatever the sequence, validate() either refuses (and nothing
    changes) or every ordered write is accepted; a second plan is empty; reset removes it all."""
    flow = engine(mech(v1_smp))
    try:
        for profile in profiles:
            before = v1_state(v1_smp)
            try:
                flow.apply(profile)
            except InvalidSpec:
                assert v1_state(v1_smp) == before
                continue
            assert flow.plan(profile) == []
    finally:
        flow.reset()
    assert v1_state(v1_smp) == {}


def test_v1_reapply_converges_after_a_parent_is_recreated_externally(v1: str, tmp_path: Path) -> None:
    """Issue 11, defect 4: someone removes and re-creates a parent group the agent made; its
    cpuset is empty again (v1), and the next apply must give it its parent's sets again, so
    nothing stays drifted."""
    from nodeagent.service.desired import DesiredStore
    from nodeagent.service.engine import Engine
    from nodeagent.service.events import EventBus
    from nodeagent.service.journal import Journal
    from nodeagent.service.registry import MechanismEntry, MechanismSet

    mechanism = mech(v1)
    entries = [MechanismEntry("cgroups", mechanism, mechanism.probe())]
    agent = Engine(
        MechanismSet(entries), Journal(tmp_path / "j.json"), DesiredStore(tmp_path / "d.json"), EventBus()
    )
    profile = {"cgroups": {"groups": [{"path": "demo/app", "cpu_weight": 100}]}}
    agent.apply(profile)
    demo = CG / "cpuset" / v1 / "demo"
    (demo / "app").rmdir()
    demo.rmdir()
    demo.mkdir()  # re-created by someone else: an empty v1 cpuset
    assert kernel(demo / "cpuset.cpus") == ""
    assert agent.apply(profile).writes_performed > 0
    assert kernel(demo / "cpuset.cpus") == host_cpus()
    assert kernel(demo / "app" / "cpuset.cpus") == host_cpus()
    assert agent.check_drift().drifted == ()
    assert agent.apply(profile).writes_performed == 0
    agent.reset()
