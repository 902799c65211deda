"""The composition root of the node agent: the one place that builds real adapters from the config.

Nothing happens at import time anywhere in the agent, and nothing is started or bound while it
is built: `build_agent(config)` creates the host adapters (the file layer, the netlink adapter
when the network mechanism is enabled), loads the mechanism plugins from their entry-point group
(each with its own MechanismContext), the journal, the engine, telemetry and the gRPC server, and
returns them wired together in an `Agent`. `Agent.start()` (called by `daemon`) binds the
listeners and starts the threads; `Agent.stop()` ends them and closes the adapters.
"""

from __future__ import annotations

import functools
import logging
import os
import pkgutil
import socket
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from prometheus_client.registry import CollectorRegistry

from nodeagent.api.server import ApiServer
from nodeagent.api.servicer import NodeConfigServicer
from nodeagent.config import AgentConfig, ConfigError, MechanismConfig
from nodeagent.errors import HostError, InvalidSpec
from nodeagent.host.cgroupfs import CgroupLayout, discover
from nodeagent.host.fs import HostFS
from nodeagent.host.runtimefiles import restart_unit
from nodeagent.mechanisms.base import Capabilities, MechanismContext
from nodeagent.mechanisms.netport import NetPort
from nodeagent.mechanisms.runtime_handlers import standard_handlers
from nodeagent.service.authz import Policy
from nodeagent.service.desired import DesiredStore
from nodeagent.service.devices import DeviceRegistry
from nodeagent.service.drift import DriftMonitor
from nodeagent.service.engine import Engine
from nodeagent.service.events import EventBus
from nodeagent.service.journal import Journal
from nodeagent.service.profile import BUILTIN_SECTIONS
from nodeagent.service.registry import MechanismEntry, MechanismSet, probe
from nodeagent.service.runtime_handlers import HandlerCatalog
from nodeagent.service.workloads import LABEL as WORKLOAD_LABEL
from nodeagent.service.workloads import SPEC_EXTENSION, WorkloadService, WorkloadSettings
from nodeagent.telemetry import DEFAULT_SETTINGS, AgentMetrics, CollectorSettings, Telemetry
from nodeagent.telemetry.workloads import WorkloadCgroup, listed_workloads

log = logging.getLogger(__name__)

MECHANISM_GROUP = "mlsysops.nodeagent.mechanisms"

#: The built-in mechanisms (pyproject.toml declares the same entry points for other tools):
#: found without scanning every installed distribution's metadata.
BUILTIN_PLUGINS = {
    "cpufreq": "nodeagent.mechanisms.cpufreq:CpuFreqMechanism",
    "cgroups": "nodeagent.mechanisms.cgroups:CgroupsMechanism",
    "network": "nodeagent.mechanisms.network:NetworkMechanism",
}


class PluginRef(Protocol):
    """What the loader needs of a plugin: its name and its factory (an importlib EntryPoint fits)."""

    @property
    def name(self) -> str: ...

    def load(self) -> Any: ...


@dataclass(frozen=True)
class Plugin:
    """A plugin as its entry point declares it (`value` is "module:attr"), imported by load().

    importlib.metadata.EntryPoint does the same, but importing importlib.metadata (email,
    zipfile, csv, ...) costs the daemon 1.3 MiB of RSS for three lines of work."""

    name: str
    value: str

    def load(self) -> Any:
        return pkgutil.resolve_name(self.value.partition("[")[0].strip())  # "mod:attr [extra]"


def mechanism_plugins(group: str = MECHANISM_GROUP) -> list[Plugin]:
    """The built-in mechanisms, then the plugins other distributions declare in `group`.

    importlib.metadata.entry_points() builds a Distribution (and parses its metadata) for every
    installed package, ~2 MiB of RSS for an answer that names three built-ins. Here only the
    entry_points.txt files on sys.path that mention the group are parsed; the first
    distribution on sys.path that names a plugin wins, as with importlib."""
    found = {name: Plugin(name, value) for name, value in BUILTIN_PLUGINS.items()}
    header = f"[{group}]"
    for entry in sys.path:
        try:
            infos = [n for n in os.listdir(entry or ".") if n.endswith((".dist-info", ".egg-info"))]
        except OSError:
            continue
        for info in sorted(infos):
            path = Path(entry or ".", info, "entry_points.txt")
            try:
                text = path.read_text(encoding="utf-8")
            except OSError:
                continue
            if header in text:
                for name, value in _section(text, header):
                    found.setdefault(name, Plugin(name, value))
    return list(found.values())


def _section(text: str, header: str) -> list[tuple[str, str]]:
    """name = value lines of one [section] of an entry_points.txt."""
    pairs: list[tuple[str, str]] = []
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            inside = line == header
        elif inside and "=" in line and not line.startswith(("#", ";")):
            name, _, value = line.partition("=")
            pairs.append((name.strip(), value.strip()))
    return pairs
CPU_DIR = "sys/devices/system/cpu"
STOP_GRACE_S = 2.0


@dataclass
class Agent:
    """The daemon's parts, wired and not yet started (see start())."""

    config: AgentConfig
    engine: Engine
    events: EventBus
    telemetry: Telemetry
    server: ApiServer
    drift: DriftMonitor
    netlink: NetPort | None = None  # owned here: closed by stop()
    workloads: WorkloadService | None = None  # runtimes.enabled: its containerd client is closed by stop()

    @property
    def metrics_url(self) -> str:
        """The /metrics URL once started ("" before, or when the config asks for none)."""
        return self.telemetry.metrics_url()

    def start(self) -> None:
        """Re-adopt the applied settings, sample, serve /metrics, serve the API, check drift: in
        that order.

        Raises ConfigError when a listener cannot be bound (port taken, socket in use); what
        was started by then is stopped again.
        """
        self.engine.readopt()  # what an earlier run applied is ours again (restore_on_shutdown: false)
        self.telemetry.start()
        try:
            if self.config.telemetry.metrics_listen:
                self._serve_metrics(self.config.telemetry.metrics_listen)
            if self.workloads is not None:
                self.workloads.start_up()  # drop-in, re-adopt workloads, discover handlers
            self.server.start()
        except BaseException:
            self.telemetry.stop()
            raise
        self.drift.start()

    def _serve_metrics(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        try:
            self.telemetry.serve_http(host.strip("[]"), int(port))
        except InvalidSpec as exc:
            raise ConfigError("telemetry.metrics_listen", exc.reason) from exc

    def stop(self) -> None:
        """Stop serving, then (if configured) put every original back, then close the adapters."""
        self.events.close()  # ends WatchEvents streams so the server can stop promptly
        self.server.stop(STOP_GRACE_S)
        self.drift.stop()
        try:
            if self.config.restore_on_shutdown:
                result = self.engine.reset()
                log.info("shutdown restored=%d", result.writes_performed)
        finally:
            self.telemetry.stop()
            if self.netlink is not None:
                self.netlink.close()
            if self.workloads is not None:
                self.workloads.client.close()


def build_agent(config: AgentConfig, plugins: Iterable[PluginRef] | None = None) -> Agent:
    """Everything the daemon needs, built from `config` and not started; raises ConfigError or
    CorruptState."""
    runtime = Path(config.runtime_dir)
    try:
        runtime.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("runtime_dir", f"cannot create {runtime}: {exc.strerror}") from exc
    fs = host_fs(config)
    events = EventBus()
    journal = Journal(runtime / "journal.json")  # a corrupt journal stops us here, before any write
    if originals := journal.originals():
        log.warning("journal=%s holds %d originals from an earlier run: Reset restores them",
                    journal.path, len(originals))
    freq_fs = cpufreq_fs(config, fs)  # one tree for the mechanism and the telemetry
    netlink = netlink_host(config)
    group = mechanism_plugins() if plugins is None else plugins
    mechanisms = load_mechanisms(config, fs, group, freq_fs, netlink)
    registry = CollectorRegistry(auto_describe=True)
    store = DesiredStore(runtime / "desired.json")
    limits = config.limits.request_limits()
    engine = Engine(mechanisms, journal, store, events, AgentMetrics(registry), limits=limits)
    layout = cgroup_layout(fs, config)
    workloads = workload_service(config, events)
    telemetry = Telemetry(
        registry=registry,
        fs=fs,
        # Runs on the sampler thread: desired_profile() hands out the current profile, which
        # the engine replaces on each apply and never mutates, and the rest only reads files.
        cgroup_targets=lambda: managed_cgroups(fs, layout, config.host.cgroup_root, engine.desired_profile()),
        settings=collector_settings(config),
        cpufreq_fs=freq_fs,
        workloads=workload_lister(workloads),
    )
    servicer = NodeConfigServicer(
        node_name=config.node_name or socket.gethostname(),
        engine=engine,
        mechanisms=mechanisms,
        devices=DeviceRegistry(events, limits),
        events=events,
        telemetry=telemetry,
        max_watchers=config.listen.max_watchers,
        workloads=workloads,
    )
    server = ApiServer(servicer, config.listen, limits, Policy(config.authz.policy))
    drift = DriftMonitor(engine, config.drift.interval_s, config.drift.enforce)
    return Agent(config, engine, events, telemetry, server, drift, netlink, workloads)


def workload_service(config: AgentConfig, events: EventBus) -> WorkloadService | None:
    """The runtime handlers and workloads (runtimes.enabled): containerd's client opens nothing
    until used; start_up() writes the drop-in and discovers."""
    settings = config.runtimes
    if not settings.enabled:
        return None
    wrapper = settings.runsc_wrapper
    catalog = HandlerCatalog(
        config_path=Path(settings.containerd_config),
        dropin_path=Path(settings.dropin) if settings.dropin else None,
        wrapper_path=Path(wrapper),
        runsc=settings.runsc,
        wanted=standard_handlers(wrapper),
    )
    workload_settings = WorkloadSettings(
        namespace=settings.namespace,
        log_dir=Path(config.runtime_dir) / "workloads",
        allowed_mount_roots=tuple(r for r in settings.allowed_mount_roots.split(":") if r),
        cgroup_root=config.host.cgroup_root,
        netns_dir=config.host.netns_dir,
        probe_image=settings.probe_image,
    )
    from nodeagent.host.containerd import ContainerdClient  # its stubs load only when runtimes are enabled

    client = ContainerdClient(settings.containerd_socket, settings.namespace)
    restart = functools.partial(restart_unit, settings.restart_unit) if settings.restart_unit else None
    return WorkloadService(client, catalog, workload_settings, events, restart_containerd=restart)


def workload_lister(service: WorkloadService | None) -> Callable[[], Sequence[WorkloadCgroup]]:
    """What the workloads collector samples: the containers of our namespace (one List call on
    the sampler thread), or nothing when runtimes are disabled."""
    if service is None:
        return list
    return functools.partial(
        listed_workloads, service.client, service.settings.cgroup_root, WORKLOAD_LABEL, SPEC_EXTENSION
    )


# ---------------------------------------------------------------- host


def host_fs(config: AgentConfig) -> HostFS:
    """The file layer every mechanism and collector uses (a simulated node with simulate: all)."""
    if config.host.simulate == "all":
        from nodeagent.host.simulated import build_simulated_host

        return build_simulated_host(config.host.fs_root, cpus=os.cpu_count() or 1)
    return HostFS(config.host.fs_root)


def netlink_host(config: AgentConfig) -> NetPort | None:
    """The netlink adapter, None when the network mechanism is disabled; it opens netlink
    sockets only when a call needs netlink (nodeagent/host/lazynetlink.py)."""
    if not config.mechanisms.get("network", MechanismConfig()).enabled:
        return None
    from nodeagent.host.lazynetlink import LazyNetlink

    return LazyNetlink(config.host.netns_dir)


def cgroup_layout(fs: HostFS, config: AgentConfig) -> CgroupLayout:
    """The cgroup hierarchies below the configured mount, discovered once for the telemetry
    (none when the mount table cannot be read: the cgroups collector then reports nothing)."""
    try:
        return discover(fs, config.host.cgroup_mount)
    except HostError as exc:
        log.warning("cgroup mounts unreadable, no cgroup telemetry: %s", exc)
        return CgroupLayout(config.host.cgroup_mount.strip("/"), ())


def cpufreq_fs(config: AgentConfig, fs: HostFS) -> HostFS:
    """simulate: cpufreq gives the cpufreq mechanism a simulated tree when the host has none."""
    if config.host.simulate != "cpufreq" or _has_cpufreq(fs):
        return fs
    from nodeagent.host.simulated import build_simulated_host

    root = Path(config.runtime_dir) / "simulated-cpufreq"
    log.info("host has no cpufreq: simulating it under %s", root)
    return build_simulated_host(root, cpus=os.cpu_count() or 1, cgroup2=None)


def _has_cpufreq(fs: HostFS) -> bool:
    """Some CPU has a cpuN/cpufreq directory, which is what the mechanism and the collector use
    (VMs often have an empty top-level cpufreq directory and no per-CPU one)."""
    cpus = [n for n in _listdir(fs, CPU_DIR) if n.startswith("cpu") and n[3:].isdigit()]
    return any(fs.is_dir(f"{CPU_DIR}/{cpu}/cpufreq") for cpu in cpus)


# ---------------------------------------------------------------- mechanisms


def load_mechanisms(
    config: AgentConfig,
    fs: HostFS,
    plugins: str | Iterable[PluginRef],
    freq_fs: HostFS | None = None,
    netlink: NetPort | None = None,
) -> MechanismSet:
    """Each installed plugin, constructed and probed, or marked unavailable with the reason.

    `freq_fs` is the tree of the cpufreq mechanism (cpufreq_fs(): a simulated one when the
    config asks for it and the host has none); by default it is worked out here. `netlink` is
    the adapter handed to every plugin's context (the network mechanism needs it).

    A plugin that fails to load makes only itself unavailable (visible in the inventory): the
    other mechanisms keep working. A config section for a plugin that is not installed is an
    error, since it is most likely a typo.
    """
    if isinstance(plugins, str):  # a group name: every distribution's (tests and tools)
        from importlib.metadata import entry_points

        plugins = entry_points(group=plugins)
    found = {ep.name: ep for ep in plugins}
    for name in config.mechanisms:
        if name not in found:
            installed = ", ".join(found)
            raise ConfigError(f"mechanisms.{name}", f"no such mechanism plugin (installed: {installed})")
    if freq_fs is None and "cpufreq" in found:
        freq_fs = cpufreq_fs(config, fs)
    entries = [
        _load_one(
            name,
            found[name],
            config,
            freq_fs if name == "cpufreq" and freq_fs is not None else fs,
            config.mechanisms.get(name, MechanismConfig()),
            netlink,
        )
        for name in _apply_order(found)
    ]
    for entry in entries:
        log.info("mechanism=%s available=%s reason=%r", entry.name, entry.usable, entry.capabilities.reason)
    return MechanismSet(entries)


def _apply_order(names: Iterable[str]) -> list[str]:
    """Built-in sections in profile order (cpufreq, cgroups, network), then plugins by name."""
    return sorted(names, key=lambda n: (BUILTIN_SECTIONS.index(n) if n in BUILTIN_SECTIONS else 99, n))


def _load_one(
    name: str,
    entry_point: PluginRef,
    config: AgentConfig,
    fs: HostFS,
    settings: MechanismConfig,
    netlink: NetPort | None,
) -> MechanismEntry:
    if not settings.enabled:
        disabled = Capabilities(False, f"disabled by configuration (mechanisms.{name}.enabled)")
        return MechanismEntry(name, None, disabled)
    context = MechanismContext(
        fs=fs,
        cgroup_mount=config.host.cgroup_mount,
        cgroup_root=config.host.cgroup_root,
        netns_dir=config.host.netns_dir,
        netlink=netlink,
        options=settings.options,
    )
    try:
        mechanism = entry_point.load()(context)
    except InvalidSpec as exc:  # the plugin rejected its options
        raise ConfigError(f"mechanisms.{name}.options.{exc.field}", exc.reason) from exc
    except Exception as exc:
        log.exception("mechanism=%s failed to load", name)
        return MechanismEntry(name, None, Capabilities(False, f"failed to load: {type(exc).__name__}: {exc}"))
    return MechanismEntry(name, mechanism, probe(mechanism))


# ---------------------------------------------------------------- telemetry


def collector_settings(config: AgentConfig) -> list[CollectorSettings]:
    """The configured collectors over their defaults; unknown names are config errors."""
    defaults = {s.name: s for s in DEFAULT_SETTINGS}
    settings: list[CollectorSettings] = []
    for name, wanted in config.telemetry.collectors.items():
        if name not in defaults:
            known = ", ".join(defaults)
            raise ConfigError(f"telemetry.collectors.{name}", f"unknown collector (known: {known})")
        base = defaults[name]
        settings.append(
            CollectorSettings(
                name,
                base.enabled if wanted.enabled is None else wanted.enabled,
                base.interval_ms if wanted.interval_ms is None else wanted.interval_ms,
            )
        )
    return settings


def managed_cgroups(
    fs: HostFS, layout: CgroupLayout, cgroup_root: str, profile: Mapping[str, Any]
) -> Sequence[str]:
    """Cgroup directories (relative to the fs root) of the desired profile's groups, in every
    hierarchy of `layout` where they exist: what the telemetry's cgroups collector reports on."""
    groups: list[Any] = profile.get("cgroups", {}).get("groups", [])
    paths = [g["path"] for g in groups if isinstance(g, Mapping) and isinstance(g.get("path"), str)]
    return [
        f"{h.path}/{cgroup_root}/{p}"
        for h in layout.hierarchies
        for p in paths
        if fs.is_dir(f"{h.path}/{cgroup_root}/{p}")
    ]


def _listdir(fs: HostFS, rel: str) -> list[str]:
    try:
        return [name for name in fs.listdir(rel) if fs.is_dir(f"{rel}/{name}")]
    except HostError:
        return []

