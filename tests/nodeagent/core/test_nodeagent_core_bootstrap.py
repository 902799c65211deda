"""The composition root: plugin discovery and configuration of mechanisms and telemetry."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from nodeagent.bootstrap import (
    MECHANISM_GROUP,
    build_agent,
    collector_settings,
    cpufreq_fs,
    load_mechanisms,
    managed_cgroups,
)
from nodeagent.config import ConfigError, parse_config
from nodeagent.host.cgroupfs import discover
from nodeagent.host.fs import HostFS


def plugin(name: str, value: str) -> EntryPoint:
    return EntryPoint(name, value, MECHANISM_GROUP)


PLUGINS = [
    plugin("zeta", "no_such_module_for_tests:Mechanism"),
    plugin("network", "no_such_module_for_tests:Network"),
    plugin("cpufreq", "nodeagent.mechanisms.cpufreq:CpuFreqMechanism"),
]


def test_plugins_load_in_profile_order_and_a_broken_one_only_disables_itself(tmp_path: Path) -> None:
    mechanisms = load_mechanisms(parse_config({}), HostFS(tmp_path), PLUGINS)
    entries = mechanisms.entries()
    assert [e.name for e in entries] == ["cpufreq", "network", "zeta"]
    assert entries[0].mechanism is not None  # loaded; probing an empty tree finds no cpufreq
    assert not entries[0].capabilities.available and entries[0].capabilities.reason
    assert entries[2].mechanism is None
    assert entries[2].capabilities.reason.startswith("failed to load: ModuleNotFoundError")


def test_mechanisms_can_be_disabled_and_unknown_names_are_config_errors(tmp_path: Path) -> None:
    config = parse_config({"mechanisms": {"cpufreq": {"enabled": False}}})
    cpufreq = load_mechanisms(config, HostFS(tmp_path), PLUGINS).get("cpufreq")
    assert cpufreq is not None and cpufreq.mechanism is None
    assert cpufreq.capabilities.reason == "disabled by configuration (mechanisms.cpufreq.enabled)"
    with pytest.raises(ConfigError) as err:
        load_mechanisms(parse_config({"mechanisms": {"gpu": {}}}), HostFS(tmp_path), PLUGINS)
    assert err.value.key == "mechanisms.gpu" and "installed: zeta, network, cpufreq" in err.value.reason


def test_collector_settings_override_only_what_the_config_says() -> None:
    collectors = {"cpu": {"interval_ms": 1000}, "network": {"enabled": False}}
    config = parse_config({"telemetry": {"collectors": collectors}})
    settings = {s.name: s for s in collector_settings(config)}
    assert (settings["cpu"].enabled, settings["cpu"].interval_ms) == (True, 1000)
    assert settings["network"].enabled is False and settings["network"].interval_ms >= 100
    with pytest.raises(ConfigError, match=r"telemetry\.collectors\.gpu: unknown collector"):
        collector_settings(parse_config({"telemetry": {"collectors": {"gpu": {}}}}))


def test_managed_cgroups_are_the_desired_groups_in_every_hierarchy_that_has_them(tmp_path: Path) -> None:
    for hierarchy in ("cpu", "memory", "pids"):
        (tmp_path / "sys/fs/cgroup" / hierarchy / "mlsysops/app").mkdir(parents=True)
        (tmp_path / "sys/fs/cgroup" / hierarchy / "cgroup.procs").write_text("")
    (tmp_path / "sys/fs/cgroup/pids/mlsysops/app").rmdir()
    profile = {"cgroups": {"groups": [{"path": "app"}, {"path": "gone"}]}}
    fs = HostFS(tmp_path)
    layout = discover(fs, "sys/fs/cgroup")
    found = managed_cgroups(fs, layout, "mlsysops", profile)
    assert found == ["sys/fs/cgroup/cpu/mlsysops/app", "sys/fs/cgroup/memory/mlsysops/app"]
    assert managed_cgroups(fs, layout, "mlsysops", {}) == []


def simulate_cpufreq(tmp_path: Path) -> tuple[Path, dict[str, object]]:
    """A host tree like this project's VMs: an empty top-level cpufreq directory, CPUs without one."""
    host = tmp_path / "host"
    (host / "sys/devices/system/cpu/cpufreq").mkdir(parents=True)
    for cpu in (0, 1):
        (host / f"sys/devices/system/cpu/cpu{cpu}").mkdir()
    return host, {
        "runtime_dir": str(tmp_path / "run"),
        "host": {"fs_root": str(host), "simulate": "cpufreq"},
        "listen": {"socket": str(tmp_path / "agent.sock")},
        "telemetry": {"metrics_listen": ""},
    }


def test_an_empty_cpufreq_directory_is_no_cpufreq_and_gets_simulated(tmp_path: Path) -> None:
    host, raw = simulate_cpufreq(tmp_path)
    fs = cpufreq_fs(parse_config(raw), HostFS(host))
    assert fs.root == tmp_path / "run/simulated-cpufreq"
    assert fs.is_dir("sys/devices/system/cpu/cpu0/cpufreq")


def test_a_host_with_per_cpu_cpufreq_is_used_as_it_is(tmp_path: Path) -> None:
    host, raw = simulate_cpufreq(tmp_path)
    (host / "sys/devices/system/cpu/cpu1/cpufreq").mkdir()
    fs = HostFS(host)
    assert cpufreq_fs(parse_config(raw), fs) is fs


def test_the_cpufreq_mechanism_and_collector_share_the_simulated_tree(tmp_path: Path) -> None:
    _, raw = simulate_cpufreq(tmp_path)
    agent = build_agent(parse_config(raw), PLUGINS)
    try:
        cpufreq = agent.engine._mechanisms.get("cpufreq")  # what the inventory shows
        assert cpufreq is not None and cpufreq.capabilities.available, cpufreq
        agent.telemetry._sampler.sample_due()  # one step of the sampler thread
        exposition = agent.telemetry.exposition().decode()
        assert 'cpu_scaling_frequency_hertz{cpu="1"}' in exposition
    finally:
        agent.stop()


def test_building_an_agent_binds_nothing_until_it_is_started(tmp_path: Path) -> None:
    _, raw = simulate_cpufreq(tmp_path)
    raw["telemetry"] = {"metrics_listen": "127.0.0.1:0"}
    sock = tmp_path / "agent.sock"
    agent = build_agent(parse_config(raw), PLUGINS)
    assert not sock.exists() and agent.server.addresses == [] and agent.metrics_url == ""
    agent.start()
    try:
        assert sock.exists() and agent.server.addresses == [f"unix:{sock}"]
        assert agent.metrics_url.startswith("http://127.0.0.1:")
    finally:
        agent.stop()
    assert not sock.exists()
