"""cpufreq mechanism: against the simulated sysfs (kernel semantics), and the real one if present."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodeagent.errors import InvalidSpec, Unsupported
from nodeagent.host.fs import HostFS
from nodeagent.host.simulated import CpuFreqSpec, SimulatedKernelFS, build_simulated_host
from nodeagent.mechanisms.base import Mechanism, MechanismContext, Write
from nodeagent.mechanisms.cpufreq import CpuFreqMechanism

PROFILE = {"settings": [{"cpus": "0-3", "governor": "powersave", "min_khz": 1200000, "max_khz": 2000000}]}


def mech(fs: HostFS) -> CpuFreqMechanism:
    return CpuFreqMechanism(MechanismContext(fs=fs))


def attr(fs: HostFS, cpu: int, name: str) -> str:
    return fs.read(f"sys/devices/system/cpu/cpu{cpu}/cpufreq/{name}")


def test_is_a_mechanism(sim_host: SimulatedKernelFS) -> None:
    assert isinstance(mech(sim_host), Mechanism)
    assert mech(sim_host).name == "cpufreq"


def test_apply_reads_back_and_a_second_apply_writes_nothing(sim_host: SimulatedKernelFS, engine: Any) -> None:
    flow = engine(mech(sim_host))
    writes = flow.apply(PROFILE)
    assert len(writes) == 12  # 4 policies x governor, min, max
    for cpu in range(4):
        assert attr(sim_host, cpu, "scaling_governor") == "powersave"
        assert attr(sim_host, cpu, "scaling_min_freq") == "1200000"
        assert attr(sim_host, cpu, "scaling_max_freq") == "2000000"
        assert attr(sim_host, cpu, "scaling_cur_freq") == "1200000"  # powersave runs at min
    assert flow.plan(PROFILE) == []


def test_reset_restores_the_originals(sim_host: SimulatedKernelFS, engine: Any, snapshot: Callable) -> None:
    before = snapshot(sim_host.root)
    flow = engine(mech(sim_host))
    flow.apply(PROFILE)
    flow.apply({"settings": [{"cpus": "1", "min_khz": 2400000, "max_khz": 2400000}]})
    flow.reset()
    after = snapshot(sim_host.root)
    changed = {path for path in before if before[path] != after[path]}
    assert all(path.endswith("/scaling_cur_freq") for path in changed)  # the governor moves it
    assert set(after) == set(before)


def test_empty_cpus_selects_every_online_cpu(sim_host: SimulatedKernelFS) -> None:
    plan = mech(sim_host).validate({"settings": [{"cpus": "", "governor": "performance"}]}, "cpufreq")
    desired = plan.desired
    assert desired == {f"cpu{c}/scaling_governor": "performance" for c in range(4)}


def test_cpus_sharing_a_policy_get_one_knob_named_after_its_first_cpu(tmp_path: Path) -> None:
    fs = build_simulated_host(tmp_path, cpufreq=CpuFreqSpec(cpus_per_policy=2))
    desired = mech(fs).validate({"settings": [{"cpus": "1,3", "governor": "performance"}]}, "cpufreq").desired
    assert desired == {"cpu0/scaling_governor": "performance", "cpu2/scaling_governor": "performance"}


def test_conflicting_values_for_one_policy_are_refused(tmp_path: Path) -> None:
    fs = build_simulated_host(tmp_path, cpufreq=CpuFreqSpec(cpus_per_policy=2))
    profile = {"settings": [{"cpus": "0", "governor": "performance"}, {"cpus": "1", "governor": "powersave"}]}
    with pytest.raises(InvalidSpec) as err:
        mech(fs).validate(profile, "cpufreq")
    assert err.value.field == "cpufreq.settings[1].governor"
    assert "shares a policy with cpu 0" in err.value.reason


@pytest.mark.parametrize(
    ("profile", "field", "reason"),
    [
        ({"settings": [{"governor": "turbo"}]}, "cpufreq.settings[0].governor", "unknown governor 'turbo'"),
        ({"settings": [{"governor": ""}]}, "cpufreq.settings[0].governor", "empty"),
        ({"settings": [{"governor": 3}]}, "cpufreq.settings[0].governor", "must be a string"),
        ({"settings": [{"max_khz": 3000000}]}, "cpufreq.settings[0].max_khz", "hardware range"),
        ({"settings": [{"min_khz": 100}]}, "cpufreq.settings[0].min_khz", "outside"),
        ({"settings": [{"min_khz": -1}]}, "cpufreq.settings[0].min_khz", "outside"),
        ({"settings": [{"max_khz": 1500000}]}, "cpufreq.settings[0].max_khz", "available_frequencies"),
        ({"settings": [{"max_khz": True}]}, "cpufreq.settings[0].max_khz", "must be an integer"),
        ({"settings": [{"max_khz": 1.5}]}, "cpufreq.settings[0].max_khz", "must be an integer"),
        (
            {"settings": [{"min_khz": 2000000, "max_khz": 1200000}]},
            "cpufreq.settings[0].min_khz",
            "above max_khz",
        ),
        ({"settings": [{"cpus": "9", "governor": "ondemand"}]}, "cpufreq.settings[0].cpus", "does not exist"),
        ({"settings": [{"cpus": "0-", "governor": "powersave"}]}, "cpufreq.settings[0].cpus", "not a cpu id"),
        ({"settings": [{"cpus": "0"}]}, "cpufreq.settings[0]", "sets nothing"),
        ({"settings": [{"cpus": "0", "gov": "x"}]}, "cpufreq.settings[0].gov", "unknown field"),
        ({"settings": "fast"}, "cpufreq.settings", "must be a list"),
        ({"policies": []}, "cpufreq.policies", "unknown field"),
        ({"settings": [7]}, "cpufreq.settings[0]", "must be a mapping"),
        (
            {"settings": [{"cpus": "0", "governor": "powersave"}, {"cpus": "0", "governor": "performance"}]},
            "cpufreq.settings[1].governor",
            "selected twice",
        ),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(
    sim_host: SimulatedKernelFS, snapshot: Callable, profile: dict, field: str, reason: str
) -> None:
    before = snapshot(sim_host.root)
    with pytest.raises(InvalidSpec) as err:
        mech(sim_host).validate(profile, "cpufreq")
    assert err.value.field == field
    assert reason in err.value.reason
    assert snapshot(sim_host.root) == before


def test_min_above_the_current_max_is_refused_when_max_is_not_given(sim_host: SimulatedKernelFS) -> None:
    sim_host.write("sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq", "1600000")
    with pytest.raises(InvalidSpec, match="current scaling_max_freq 1600000") as err:
        mech(sim_host).validate({"settings": [{"cpus": "0", "min_khz": 2000000}]}, "cpufreq")
    assert err.value.field == "cpufreq.settings[0].min_khz"


def test_offline_cpu_is_refused(sim_host: SimulatedKernelFS) -> None:
    (sim_host.root / "sys/devices/system/cpu/online").write_text("0-2\n")
    with pytest.raises(InvalidSpec, match="cpu 3 is offline"):
        mech(sim_host).validate({"settings": [{"cpus": "3", "governor": "powersave"}]}, "cpufreq")


def test_continuous_range_drivers_accept_any_in_range_frequency(tmp_path: Path, engine: Any) -> None:
    spec = CpuFreqSpec(driver="intel_pstate", governors=("performance", "powersave"), frequencies_khz=None)
    fs = build_simulated_host(tmp_path, cpufreq=spec)
    flow = engine(mech(fs))
    flow.apply({"settings": [{"cpus": "0", "max_khz": 1500000}]})
    assert attr(fs, 0, "scaling_max_freq") == "1500000"
    assert flow.plan({"settings": [{"cpus": "0", "max_khz": 1500000}]}) == []


def test_vm_without_cpufreq_is_unsupported_and_probe_says_why(tmp_path: Path) -> None:
    fs = build_simulated_host(tmp_path, cpus=2, cpufreq=None)
    caps = mech(fs).probe()
    assert not caps.available
    assert caps.reason == "no cpufreq in sysfs (e.g. a VM)"
    assert caps.details == {
        "cpus": [{"id": 0, "cpufreq_available": False}, {"id": 1, "cpufreq_available": False}],
        "policies": [],
    }
    with pytest.raises(Unsupported, match="no cpufreq"):
        mech(fs).validate({"settings": [{"governor": "powersave"}]}, "cpufreq")
    assert mech(fs).validate({"settings": []}, "cpufreq").desired == {}


def test_probe_details_carry_the_proto_cpu_fields(tmp_path: Path) -> None:
    fs = build_simulated_host(tmp_path, cpus=2, cpufreq=CpuFreqSpec(cpus_per_policy=2))
    caps = mech(fs).probe()
    assert caps.available
    assert caps.details is not None
    assert caps.details["policies"] == [{"cpus": "0-1", "driver": "acpi-cpufreq"}]
    cpu1 = caps.details["cpus"][1]
    assert cpu1 == {
        "id": 1,
        "cpufreq_available": True,
        "available_governors": ["conservative", "ondemand", "userspace", "powersave", "performance"],
        "available_frequencies_khz": [800000, 1200000, 1600000, 2000000, 2400000],
        "cpuinfo_min_khz": 800000,
        "cpuinfo_max_khz": 2400000,
        "governor": "ondemand",
        "scaling_min_khz": 800000,
        "scaling_max_khz": 2400000,
        "current_khz": 800000,
    }
    from mlsysops.nodeconfig.v1 import nodeconfig_pb2

    nodeconfig_pb2.Cpu(**cpu1)  # the inventory can build its message from the details as they are


def w(bound: str, before: str, after: str) -> Write:
    return Write("cpufreq", f"cpu0/scaling_{bound}_freq", before, after)


@pytest.mark.parametrize(
    ("writes", "expected_first"),
    [
        # raising both above the current max: max first
        ([w("min", "800000", "2000000"), w("max", "1200000", "2400000")], "max"),
        # lowering both below the current min: min first
        ([w("max", "2400000", "1200000"), w("min", "2000000", "800000")], "min"),
    ],
)
def test_order_widens_before_narrowing(
    sim_host: SimulatedKernelFS, writes: list[Write], expected_first: str
) -> None:
    ordered = mech(sim_host).order(writes)
    assert ordered[0].key.endswith(f"scaling_{expected_first}_freq")


FREQS = (800000, 1200000, 1600000, 2000000, 2400000)
RANGES = st.tuples(st.sampled_from(FREQS), st.sampled_from(FREQS)).map(sorted)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(start=RANGES, target=RANGES)
def test_every_range_move_is_accepted_by_the_kernel(
    sim_host: SimulatedKernelFS, engine: Any, start: list[int], target: list[int]
) -> None:
    """Whatever the start, the ordered writes never make the (strict) simulated kernel see min > max."""
    base = "sys/devices/system/cpu/cpu0/cpufreq"
    sim_host.write(f"{base}/scaling_min_freq", "800000")  # widest first, then the start range
    sim_host.write(f"{base}/scaling_max_freq", str(start[1]))
    sim_host.write(f"{base}/scaling_min_freq", str(start[0]))
    engine(mech(sim_host)).apply({"settings": [{"cpus": "0", "min_khz": target[0], "max_khz": target[1]}]})
    assert [int(attr(sim_host, 0, "scaling_min_freq")), int(attr(sim_host, 0, "scaling_max_freq"))] == target


def test_unknown_keys_are_refused_by_read_and_write(sim_host: SimulatedKernelFS) -> None:
    from nodeagent.errors import HostError

    with pytest.raises(HostError):
        mech(sim_host).read(["cpu0/../../../etc/passwd"])
    with pytest.raises(HostError):
        mech(sim_host).write(Write("cpufreq", "cpu0/scaling_setspeed", "x", "1"))


REAL_CPUFREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq")


@pytest.mark.skipif(not REAL_CPUFREQ.is_dir(), reason="this machine has no cpufreq in sysfs (e.g. a VM)")
def test_real_sysfs_round_trip(engine: Any) -> None:  # pragma: no cover - hardware only
    """Move cpu0's scaling_max_freq through the real sysfs, read it back, and restore it."""
    if not os.access(REAL_CPUFREQ / "scaling_max_freq", os.W_OK):
        pytest.skip("needs write access to /sys/devices/system/cpu/cpu0/cpufreq")
    m = mech(HostFS("/"))
    state = m.probe().details["cpus"][0]  # type: ignore[index]
    table = state["available_frequencies_khz"] or [state["cpuinfo_min_khz"], state["cpuinfo_max_khz"]]
    choices = [f for f in table if f >= state["scaling_min_khz"] and f != state["scaling_max_khz"]]
    if not choices:
        pytest.skip("cpu0 offers no other maximum frequency")
    profile = {"settings": [{"cpus": "0", "max_khz": max(choices)}]}
    flow = engine(m)
    try:
        flow.apply(profile)
        assert m.read(["cpu0/scaling_max_freq"]) == {"cpu0/scaling_max_freq": str(max(choices))}
        assert flow.plan(profile) == []
    finally:
        flow.reset()
    assert m.read(["cpu0/scaling_max_freq"]) == {"cpu0/scaling_max_freq": str(state["scaling_max_khz"])}


@pytest.mark.skipif(REAL_CPUFREQ.is_dir(), reason="this machine has cpufreq (covered by the round trip)")
def test_real_sysfs_without_cpufreq_is_reported_unavailable() -> None:
    caps = mech(HostFS("/")).probe()
    assert not caps.available
    assert caps.reason == "no cpufreq in sysfs (e.g. a VM)"
    assert caps.details is not None
    assert [c["id"] for c in caps.details["cpus"]] == sorted(
        int(p.name[3:]) for p in Path("/sys/devices/system/cpu").glob("cpu[0-9]*")
    )


def test_a_cpu_without_a_policy_is_refused_while_the_others_work(sim_host: SimulatedKernelFS) -> None:
    (sim_host.root / "sys/devices/system/cpu/cpu3/cpufreq").unlink()  # e.g. a core the driver skipped
    caps = mech(sim_host).probe()
    assert caps.available
    assert caps.details is not None
    assert caps.details["cpus"][3] == {"id": 3, "cpufreq_available": False}
    with pytest.raises(InvalidSpec, match="cpu 3 has no cpufreq policy") as err:
        mech(sim_host).validate({"settings": [{"cpus": "2-3", "governor": "powersave"}]}, "cpufreq")
    assert err.value.field == "cpufreq.settings[0].cpus"
    everywhere = mech(sim_host).validate({"settings": [{"cpus": "", "governor": "powersave"}]}, "cpufreq")
    assert sorted(everywhere.desired) == [f"cpu{c}/scaling_governor" for c in range(3)]  # "" skips cpu3
