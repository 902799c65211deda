"""cgroups mechanism on cgroup v2, against the simulated kernel tree (pure v2 at /sys/fs/cgroup)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodeagent.errors import HostError, InvalidSpec, Unsupported
from nodeagent.host.simulated import Cgroup2Spec, SimulatedKernelFS, build_simulated_host
from nodeagent.mechanisms.base import Mechanism, MechanismContext, Write
from nodeagent.mechanisms.cgroups import CgroupsMechanism

GROUP = {
    "path": "demo/app",
    "cpu_quota_us": 50000,
    "cpu_period_us": 100000,
    "cpu_weight": 100,
    "cpuset_cpus": "0-1",
    "cpuset_mems": "0",
    "memory_max_bytes": 268435456,
}
CG = "sys/fs/cgroup"


def mech(fs: SimulatedKernelFS, root: str = "mlsysops") -> CgroupsMechanism:
    return CgroupsMechanism(MechanismContext(fs=fs, cgroup_root=root))


def read(fs: SimulatedKernelFS, rel: str) -> str:
    return fs.read(f"{CG}/{rel}")


def test_is_a_mechanism(sim_host: SimulatedKernelFS) -> None:
    assert isinstance(mech(sim_host), Mechanism)


def test_probe_reports_a_pure_v2_layout(sim_host: SimulatedKernelFS) -> None:
    caps = mech(sim_host).probe()
    assert caps.available
    assert caps.details == {
        "version": "v2",
        "root": "mlsysops",
        "controllers": [
            {"name": n, "version": "v2", "mount": "/sys/fs/cgroup"}
            for n in ("cpu", "cpuset", "io", "memory", "pids")
        ],
        "missing": [],
    }
    from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb

    details = caps.details
    info = pb.CgroupInfo(  # the inventory builds its message from the details as they are
        version=details["version"],
        root=details["root"],
        controllers=[pb.CgroupController(**c) for c in details["controllers"]],
    )
    assert info.controllers[1].name == "cpuset"


def test_apply_creates_the_group_enables_controllers_and_sets_every_knob(
    sim_host: SimulatedKernelFS, engine: Any
) -> None:
    writes = engine(mech(sim_host)).apply({"groups": [GROUP]})
    assert read(sim_host, "mlsysops/demo/app/cpu.max") == "50000 100000"
    assert read(sim_host, "mlsysops/demo/app/cpu.weight") == "100"
    assert read(sim_host, "mlsysops/demo/app/cpuset.cpus") == "0-1"
    assert read(sim_host, "mlsysops/demo/app/cpuset.mems") == "0"
    assert read(sim_host, "mlsysops/demo/app/memory.max") == "268435456"
    for parent in ("", "mlsysops/", "mlsysops/demo/"):
        assert read(sim_host, f"{parent}cgroup.subtree_control") == "cpuset cpu memory"
    keys = [w.key for w in writes]
    assert keys[:3] == ["mlsysops/", "mlsysops/demo/", "mlsysops/demo/app/"]  # parents first
    assert keys.index("cgroup.subtree_control[cpu]") < keys.index("mlsysops/demo/app/cpu.max")


def test_a_second_identical_apply_plans_zero_writes(sim_host: SimulatedKernelFS, engine: Any) -> None:
    flow = engine(mech(sim_host))
    flow.apply({"groups": [GROUP]})
    assert flow.plan({"groups": [GROUP]}) == []
    assert flow.plan({"groups": [{"path": "demo/app", "cpuset_cpus": "1,0"}]}) == []  # spelling is canonical


def test_reset_restores_the_tree_exactly(
    sim_host: SimulatedKernelFS, engine: Any, snapshot: Callable
) -> None:
    before = snapshot(sim_host.root)
    flow = engine(mech(sim_host))
    flow.apply({"groups": [GROUP, {"path": "demo/db", "memory_max_bytes": -1, "cpu_quota_us": -1}]})
    flow.apply({"groups": [{"path": "demo/app", "cpu_weight": 500, "cpuset_cpus": "2-3"}]})
    flow.reset()
    assert snapshot(sim_host.root) == before


def test_only_quota_keeps_the_current_period(sim_host: SimulatedKernelFS, engine: Any) -> None:
    flow = engine(mech(sim_host))
    flow.apply({"groups": [{"path": "g", "cpu_quota_us": 20000, "cpu_period_us": 50000}]})
    flow.apply({"groups": [{"path": "g", "cpu_quota_us": -1}]})
    assert read(sim_host, "mlsysops/g/cpu.max") == "max 50000"


def test_memory_is_planned_in_whole_pages(sim_host: SimulatedKernelFS, engine: Any) -> None:
    flow = engine(mech(sim_host))
    profile = {"groups": [{"path": "g", "memory_max_bytes": 100_000_000}]}  # not a page multiple
    flow.apply(profile)
    assert read(sim_host, "mlsysops/g/memory.max") == str(100_000_000 // 4096 * 4096)
    assert flow.plan(profile) == []


def test_a_group_without_knobs_is_just_created(sim_host: SimulatedKernelFS, engine: Any) -> None:
    writes = engine(mech(sim_host)).apply({"groups": [{"path": "empty"}]})
    assert [w.key for w in writes] == ["mlsysops/", "mlsysops/empty/"]
    assert sim_host.is_dir(f"{CG}/mlsysops/empty")


def test_parent_and_child_cpusets_in_one_profile(sim_host: SimulatedKernelFS, engine: Any) -> None:
    profile = {"groups": [{"path": "a/b", "cpuset_cpus": "2"}, {"path": "a", "cpuset_cpus": "2-3"}]}
    engine(mech(sim_host)).apply(profile)
    assert read(sim_host, "mlsysops/a/cpuset.cpus.effective") == "2-3"
    assert read(sim_host, "mlsysops/a/b/cpuset.cpus.effective") == "2"


def test_cpuset_order_widens_parents_first_and_narrows_children_first(sim_host: SimulatedKernelFS) -> None:
    m = mech(sim_host)
    parent, child = "mlsysops/a/cpuset.cpus", "mlsysops/a/b/cpuset.cpus"
    widen = m.order([Write("cgroups", child, "0", "0-3"), Write("cgroups", parent, "0", "0-3")])
    assert [w.key for w in widen] == [parent, child]
    narrow = m.order([Write("cgroups", parent, "0-3", "0"), Write("cgroups", child, "0-3", "0")])
    assert [w.key for w in narrow] == [child, parent]


def test_teardown_order_removes_children_then_disables_controllers(sim_host: SimulatedKernelFS) -> None:
    m = mech(sim_host)
    writes = [
        Write("cgroups", "cgroup.subtree_control[cpu]", "enabled", "disabled"),
        Write("cgroups", "mlsysops/", "present", None),
        Write("cgroups", "mlsysops/a/cpu.max", "50000 100000", None),
        Write("cgroups", "mlsysops/a/", "present", None),
    ]
    assert [w.key for w in m.order(writes)] == [
        "mlsysops/a/cpu.max",
        "mlsysops/a/",
        "mlsysops/",
        "cgroup.subtree_control[cpu]",
    ]


@pytest.mark.parametrize(
    ("group", "field", "reason"),
    [
        ({"path": "/etc"}, "path", "absolute"),
        ({"path": "../escape"}, "path", "'..'"),
        ({"path": "a/../../b"}, "path", "'..'"),
        ({"path": ""}, "path", "empty"),
        ({}, "path", "empty"),
        ({"path": "a;rm -rf"}, "path", "must use only"),
        ({"path": "g", "cpu_quota_us": -5}, "cpu_quota_us", "negative"),
        ({"path": "g", "cpu_quota_us": 500}, "cpu_quota_us", "outside"),
        ({"path": "g", "cpu_quota_us": 10**18}, "cpu_quota_us", "outside"),
        ({"path": "g", "cpu_period_us": 100}, "cpu_period_us", "outside"),
        ({"path": "g", "cpu_weight": 0}, "cpu_weight", "outside"),
        ({"path": "g", "cpu_weight": "heavy"}, "cpu_weight", "must be an integer"),
        ({"path": "g", "memory_max_bytes": -2}, "memory_max_bytes", "negative"),
        ({"path": "g", "memory_max_bytes": 100}, "memory_max_bytes", "below"),
        ({"path": "g", "memory_max_bytes": 2**62}, "memory_max_bytes", "more than"),
        ({"path": "g", "cpuset_cpus": "7"}, "cpuset_cpus", "not within the parent's effective cpus '0-3'"),
        ({"path": "g", "cpuset_cpus": "x"}, "cpuset_cpus", "not a cpu id"),
        ({"path": "g", "cpuset_mems": "1"}, "cpuset_mems", "not within the parent's effective mems '0'"),
        ({"path": "g", "cpu_shares": 5}, "cpu_shares", "unknown field"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(
    sim_host: SimulatedKernelFS, snapshot: Callable, group: dict, field: str, reason: str
) -> None:
    before = snapshot(sim_host.root)
    profile = {"groups": [{"path": "fine", "cpu_weight": 10}, group]}
    with pytest.raises(InvalidSpec) as err:
        mech(sim_host).validate(profile, "cgroups")
    assert err.value.field == f"cgroups.groups[1].{field}"
    assert reason in err.value.reason
    assert snapshot(sim_host.root) == before


def test_a_child_must_stay_within_its_planned_parent(sim_host: SimulatedKernelFS) -> None:
    profile = {"groups": [{"path": "a", "cpuset_cpus": "0-1"}, {"path": "a/b", "cpuset_cpus": "2"}]}
    with pytest.raises(InvalidSpec, match="not within the parent's effective cpus '0-1'") as err:
        mech(sim_host).validate(profile, "cgroups")
    assert err.value.field == "cgroups.groups[1].cpuset_cpus"


def test_the_same_group_twice_is_refused(sim_host: SimulatedKernelFS) -> None:
    with pytest.raises(InvalidSpec, match=r"also set by cgroups\.groups\[0\]") as err:
        mech(sim_host).validate({"groups": [{"path": "a"}, {"path": "a/"}]}, "cgroups")
    assert err.value.field == "cgroups.groups[1].path"


def test_symlink_escaping_the_root_is_refused(
    sim_host: SimulatedKernelFS, tmp_path: Path, snapshot: Callable
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (sim_host.root / CG / "mlsysops").mkdir()
    os.symlink(outside, sim_host.root / CG / "mlsysops" / "evil")
    before = snapshot(sim_host.root)
    with pytest.raises(InvalidSpec, match="outside the cgroup root") as err:
        mech(sim_host).validate({"groups": [{"path": "evil/app", "cpu_weight": 5}]}, "cgroups")
    assert err.value.field == "cgroups.groups[0].path"
    assert snapshot(sim_host.root) == before
    assert list(outside.iterdir()) == []


def test_missing_controller_is_unsupported(tmp_path: Path) -> None:
    fs = build_simulated_host(tmp_path, cgroup2=Cgroup2Spec(controllers=("cpu", "memory")))
    assert mech(fs).probe().details["missing"] == ["cpuset"]  # type: ignore[index]
    with pytest.raises(Unsupported, match="cpuset_cpus: the cpuset controller is not available"):
        mech(fs).validate({"groups": [{"path": "g", "cpuset_cpus": "0"}]}, "cgroups")


def test_no_cgroupfs_at_all_is_reported_by_probe(tmp_path: Path) -> None:
    fs = build_simulated_host(tmp_path, cgroup2=None)
    caps = mech(fs).probe()
    assert not caps.available
    assert "no cgroup filesystem" in caps.reason


@pytest.mark.parametrize(
    "key",
    [
        "../../etc/passwd",
        "/etc/",
        "mlsysops/app/cgroup.procs",
        "mlsysops/app/tasks",
        "mlsysops/x/memory.high",
    ],
)
def test_keys_that_are_not_our_knobs_are_refused(sim_host: SimulatedKernelFS, key: str) -> None:
    with pytest.raises(HostError):
        mech(sim_host).read([key])
    with pytest.raises(HostError):
        mech(sim_host).write(Write("cgroups", key, None, "1"))


@pytest.mark.parametrize(
    "key", ["other/", "other/cpu.max", "mlsysops-x/cpu.weight", "other/cgroup.subtree_control[cpu]"]
)
def test_keys_outside_the_agents_root_are_refused(sim_host: SimulatedKernelFS, key: str) -> None:
    """Keys come back from the journal after a restart: they must not reach foreign groups."""
    sim_host.mkdir(f"{CG}/other")
    with pytest.raises(HostError, match="outside the agent's cgroup root"):
        mech(sim_host).write(Write("cgroups", key, None, "present" if key.endswith("/") else "1"))


def test_toggles_on_the_roots_ancestors_are_ours(sim_host: SimulatedKernelFS) -> None:
    m = mech(sim_host, root="agents/mlsysops")
    assert m.read(["cgroup.subtree_control[cpu]", "agents/cgroup.subtree_control[cpu]"]) == {
        "cgroup.subtree_control[cpu]": "disabled",
        "agents/cgroup.subtree_control[cpu]": None,
    }


def test_a_key_through_a_symlink_out_of_the_mount_is_refused(
    sim_host: SimulatedKernelFS, tmp_path: Path
) -> None:
    os.symlink(tmp_path, sim_host.root / CG / "link")
    with pytest.raises(HostError, match="outside"):
        mech(sim_host).write(Write("cgroups", "link/x/", None, "present"))


def test_a_failing_write_is_a_host_error_with_the_errno(sim_host: SimulatedKernelFS, engine: Any) -> None:
    engine(mech(sim_host)).apply({"groups": [{"path": "g", "cpu_weight": 5}]})
    sim_host.write(f"{CG}/mlsysops/g/cgroup.procs", "4242")
    with pytest.raises(HostError) as err:
        mech(sim_host).write(Write("cgroups", "mlsysops/g/", "present", None))
    assert err.value.errno == 16  # EBUSY: a populated cgroup cannot be removed


def test_invalid_cgroup_root_is_a_configuration_error(sim_host: SimulatedKernelFS) -> None:
    with pytest.raises(ValueError, match=r"cgroup_root '\.\./x'"):
        mech(sim_host, root="../x")


def test_a_nested_cgroup_root_is_created_level_by_level(sim_host: SimulatedKernelFS, engine: Any) -> None:
    writes = engine(mech(sim_host, root="agents/mlsysops")).apply(
        {"groups": [{"path": "g", "cpu_weight": 7}]}
    )
    assert [w.key for w in writes if w.key.endswith("/")] == [
        "agents/",
        "agents/mlsysops/",
        "agents/mlsysops/g/",
    ]
    assert read(sim_host, "agents/mlsysops/g/cpu.weight") == "7"


PATHS = ("a", "a/b", "c")
GROUPS = st.builds(
    dict,
    path=st.sampled_from(PATHS),
    cpu_weight=st.one_of(st.none(), st.integers(min_value=-5, max_value=10005)),
    cpu_quota_us=st.one_of(st.none(), st.sampled_from([-2, -1, 999, 1000, 50000])),
    cpu_period_us=st.one_of(st.none(), st.sampled_from([999, 1000, 100000, 1000001])),
    cpuset_cpus=st.one_of(st.none(), st.sampled_from(["", "0", "1-2", "0-3", "4"])),
    memory_max_bytes=st.one_of(st.none(), st.sampled_from([-1, 4096, 1 << 20, 100_000_000])),
).map(lambda g: {k: v for k, v in g.items() if v is not None})
PROFILES = st.lists(GROUPS, max_size=3).map(lambda gs: {"groups": list({g["path"]: g for g in gs}.values())})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(profiles=st.lists(PROFILES, min_size=1, max_size=3))
def test_any_profile_sequence_is_all_or_nothing_idempotent_and_resettable(
    engine: Any, snapshot: Callable, profiles: list[dict]
) -> None:
    """The property the engine relies on, over generated profiles on the simulated kernel:
    bad input raises InvalidSpec and writes nothing; good input applies without one refused
    write, a second plan is empty; reset restores the tree exactly (the fixtures are stateless
    factories, so sharing them between examples is safe)."""
    with tempfile.TemporaryDirectory() as tmp:
        fs = build_simulated_host(Path(tmp))
        original = snapshot(fs.root)
        flow = engine(mech(fs))
        for profile in profiles:
            before = snapshot(fs.root)
            try:
                flow.apply(profile)
            except InvalidSpec:
                assert snapshot(fs.root) == before
                continue
            assert flow.plan(profile) == []
        flow.reset()
        assert snapshot(fs.root) == original


def test_the_read_that_diffs_a_plan_answers_from_its_snapshot(
    sim_host: SimulatedKernelFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = mech(sim_host)
    m.validate({"groups": [{"path": "solo", "cpu_weight": 50}]}, "cgroups")
    for write in m.order([Write("cgroups", "mlsysops/", None, "present"),
                          Write("cgroups", "mlsysops/solo/", None, "present")]):
        m.write(write)
    reads: list[str] = []
    real_read = SimulatedKernelFS.read
    monkeypatch.setattr(SimulatedKernelFS, "read", lambda fs, rel: reads.append(rel) or real_read(fs, rel))

    def counted(keys: dict[str, str | None], snapshot: object) -> tuple[dict[str, str | None], int]:
        reads.clear()
        return m.read(keys, snapshot), len(reads)

    plan = m.validate({"groups": [{"path": "solo", "cpu_quota_us": 20000}]}, "cgroups")
    planned, from_snapshot = counted(plan.desired, plan.snapshot)  # the engine's diff
    fresh, from_host = counted(plan.desired, None)  # any other read: the host is read
    foreign, not_ours = counted(plan.desired, object())  # a snapshot it did not make is ignored
    assert planned == fresh == foreign and planned["mlsysops/solo/"] == "present"
    assert from_snapshot < from_host == not_ours
