"""The agent's configuration: one YAML file, validated into frozen dataclasses.

Each option is declared once, with its default, its documentation and its check, in the
dataclasses below; the loader, the error messages ("listen.socket_mode: expected an octal
mode string like '0660'") and docs/nodeagent-config.md are all derived from that one table
(`python -m nodeagent.config_doc > docs/nodeagent-config.md`; a test keeps the doc current).

The default file (/etc/mlsysops/nodeagent.yaml) is optional: without it the agent runs on the
embedded defaults. A file given explicitly must exist.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from nodeagent.config_checks import (
    OCTAL,
    SIMULATE_MODES,
    Check,
    absolute,
    absolute_or_empty,
    host_port,
    in_range,
    octal_mode,
    one_of,
    policy,
    positive,
    relative,
)
from nodeagent.service.limits import RequestLimits

DEFAULT_PATH = Path("/etc/mlsysops/nodeagent.yaml")


class ConfigError(ValueError):
    """A bad option: `key` is its dotted path in the file, e.g. "listen.socket_mode"."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def doc(text: str, check: Check | None = None, expect: str = "") -> dict[str, Any]:
    """An option's metadata: its documentation, its check, and (for type errors) what is expected."""
    return {"doc": text, "check": check, "expect": expect}


# ---------------------------------------------------------------- the options
# Each option: field(default..., metadata=doc(what it means, check, what a good value looks like)).


@dataclass(frozen=True)
class TlsConfig:
    """Mutual TLS for the TCP listener: all three files, or none."""

    cert: str = field(default="", metadata=doc("PEM certificate chain of the server.", absolute_or_empty))
    key: str = field(default="", metadata=doc("PEM private key of the server.", absolute_or_empty))
    client_ca: str = field(
        default="",
        metadata=doc(
            "PEM CA bundle client certificates must chain to (clients must present one).", absolute_or_empty
        ),
    )

    @property
    def enabled(self) -> bool:
        return bool(self.cert or self.key or self.client_ca)


@dataclass(frozen=True)
class ListenConfig:
    """Where the gRPC API listens: a unix socket (local callers) and optionally TCP (remote ones)."""

    socket: str = field(
        default="/run/mlsysops/nodeagent.sock",
        metadata=doc("Unix socket path; '' for none.", absolute_or_empty),
    )
    socket_mode: str = field(
        default="0660",
        metadata=doc("Permissions of the socket: who may configure this node.", octal_mode, OCTAL),
    )
    socket_group: str = field(
        default="",
        metadata=doc(
            "Group owning the socket (a name or a number), so its members may connect "
            "(with socket_mode 0660); '' leaves root's."
        ),
    )
    socket_dir_mode: str = field(
        default="0755",
        metadata=doc("Permissions of the socket's directory when the agent creates it.", octal_mode, OCTAL),
    )
    tcp: str = field(
        default="", metadata=doc("TCP address HOST:PORT; '' for none. Needs `tls` or `insecure`.", host_port)
    )
    insecure: bool = field(
        default=False, metadata=doc("Allow plain TCP without TLS (flag --insecure); tests and labs only.")
    )
    tls: TlsConfig = field(default_factory=TlsConfig, metadata=doc("Mutual TLS for the TCP listener."))
    workers: int = field(
        default=8, metadata=doc("gRPC worker threads; an open WatchEvents stream holds one.", in_range(2, 64))
    )
    max_watchers: int = field(
        default=4,
        metadata=doc(
            "Concurrent WatchEvents streams; more are refused (RESOURCE_EXHAUSTED). "
            "Must stay below `workers`.",
            in_range(1, 32),
        ),
    )


@dataclass(frozen=True)
class HostConfig:
    """Where the host's kernel interfaces are; tests and the demo point these at private trees."""

    fs_root: str = field(
        default="/", metadata=doc("Root below which sysfs, procfs and cgroupfs are accessed.", absolute)
    )
    cgroup_mount: str = field(
        default="sys/fs/cgroup", metadata=doc("Where cgroupfs is mounted, relative to fs_root.", relative)
    )
    cgroup_root: str = field(
        default="mlsysops",
        metadata=doc("Cgroup targets are relative to this directory in each hierarchy.", relative),
    )
    netns_dir: str = field(
        default="/run/netns", metadata=doc("Where named network namespaces live (as `ip netns`).", absolute)
    )
    simulate: str = field(
        default="off",
        metadata=doc(
            "'off': the real host below fs_root. 'cpufreq': like off, but cpufreq runs on "
            "a faithful simulated sysfs tree under runtime_dir when fs_root has no cpufreq "
            "(demos, VMs). 'all': fs_root is a simulated node (laid out if empty) whose files "
            "behave like the kernel's (tests).",
            one_of(*SIMULATE_MODES),
        ),
    )


@dataclass(frozen=True)
class DriftConfig:
    """The periodic comparison of the desired profile with the host."""

    interval_s: float = field(
        default=30.0, metadata=doc("Seconds between drift checks.", in_range(0.05, 86400))
    )
    enforce: bool = field(
        default=False, metadata=doc("Re-apply drifted knobs (ENFORCED events) instead of just reporting.")
    )


@dataclass(frozen=True)
class CollectorConfig:
    """One telemetry collector."""

    enabled: bool | None = field(default=None, metadata=doc("Whether the collector runs; null: its default."))
    interval_ms: int | None = field(
        default=None,
        metadata=doc("Sampling interval in milliseconds; null: its default.", in_range(100, 3_600_000)),
    )


@dataclass(frozen=True)
class TelemetryConfig:
    """Prometheus telemetry; collectors can also be changed live through the API."""

    metrics_listen: str = field(
        default="127.0.0.1:9465", metadata=doc("HOST:PORT of the /metrics endpoint; '' for none.", host_port)
    )
    collectors: dict[str, CollectorConfig] = field(
        default_factory=dict,
        metadata=doc(
            "Per collector (cpu, memory, network, cgroups, cpufreq, agent, workloads): `enabled`, "
            "`interval_ms`; collectors not listed keep their defaults."
        ),
    )


@dataclass(frozen=True)
class MechanismConfig:
    """One mechanism plugin."""

    enabled: bool = field(default=True, metadata=doc("Whether the mechanism is loaded."))
    options: dict[str, Any] = field(
        default_factory=dict, metadata=doc("Passed to the plugin as MechanismContext.options.")
    )


@dataclass(frozen=True)
class RuntimesConfig:
    """Runtime handlers (in a drop-in containerd imports; config.toml is never rewritten) and workloads."""

    enabled: bool = field(
        default=False, metadata=doc("Talk to containerd: discover handlers, run and switch workloads.")
    )
    containerd_socket: str = field(
        default="/run/containerd/containerd.sock", metadata=doc("containerd's gRPC socket.", absolute)
    )
    containerd_config: str = field(
        default="/etc/containerd/config.toml",
        metadata=doc("containerd's config; handlers are read from it and the files it imports.", absolute),
    )
    dropin: str = field(
        default="/etc/containerd/conf.d/mlsysops-runtimes.toml",
        metadata=doc(
            "The drop-in the agent writes its handlers to (config.toml must import it); '' writes none.",
            absolute_or_empty,
        ),
    )
    runsc_wrapper: str = field(
        default="/var/lib/mlsysops/runsc-wrapper",
        metadata=doc("The wrapper the agent writes for gVisor's handler (adds --platform=ptrace).", absolute),
    )
    runsc: str = field(default="/usr/bin/runsc", metadata=doc("gVisor's runsc binary.", absolute))
    namespace: str = field(default="mlsysops", metadata=doc("containerd namespace of the agent's workloads."))
    allowed_mount_roots: str = field(
        default="", metadata=doc("Host directories workloads may mount, ':'-separated; '' for none.")
    )
    probe_image: str = field(
        default="", metadata=doc("Image probe containers run `true` from; '' for the first workload's image.")
    )
    restart_unit: str = field(
        default="",
        metadata=doc(
            "systemd unit restarted when the handler drop-in changed (e.g. containerd.service); "
            "'' only reports that containerd must be restarted."
        ),
    )


_LIMITS = RequestLimits()


def _limit(name: str, text: str) -> Any:
    """A limit option whose default is RequestLimits' (one place holds the numbers)."""
    return field(default=getattr(_LIMITS, name), metadata=doc(text, positive))


@dataclass(frozen=True)
class LimitsConfig:
    """What one request may carry (checked before any work; the error names the limit)."""

    max_message_bytes: int = _limit("max_message_bytes", "Serialised size of a request.")
    max_depth: int = _limit("max_depth", "Nesting of a profile's maps and lists.")
    max_items: int = _limit("max_items", "Entries of any list or map in a profile.")
    max_string_chars: int = _limit("max_string_chars", "Characters of any string in a profile.")
    max_values: int = _limit("max_values", "Values in a whole profile.")
    max_interfaces_per_netns: int = _limit("max_interfaces_per_netns", "Interfaces shaped in one namespace.")
    max_devices_per_source: int = _limit("max_devices_per_source", "ReportDevices: devices of one source.")
    max_sources: int = _limit("max_sources", "ReportDevices: sources at once.")
    max_report_bytes: int = _limit("max_report_bytes", "ReportDevices: serialised devices of one report.")
    max_label_chars: int = _limit("max_label_chars", "source, requester and device ids.")

    def request_limits(self) -> RequestLimits:
        return RequestLimits(**{f.name: getattr(self, f.name) for f in fields(self)})


@dataclass(frozen=True)
class AuthzConfig:
    """Who may do what: identities of callers mapped to roles (docs/node-api.md, Authorisation)."""

    policy: dict[str, str] = field(
        default_factory=lambda: {"uid:0": "admin", "*": "read"},
        metadata=doc(
            "Identity -> role, the most privileged match wins; default `{uid:0: admin, '*': read}`. "
            "Identities: `uid:N`, `gid:N` (the unix socket's peer, SO_PEERCRED), `cn:NAME`, "
            "`san:NAME` (the TCP client's certificate), `*` (any caller). Roles, each including "
            "those before it: `read` (inventory, state, telemetry, events), `apply` (Apply, "
            "ReportDevices, SetTelemetryConfig), `reset` (Reset), `admin` (everything).",
            policy,
        ),
    )


@dataclass(frozen=True)
class AgentConfig:
    """The node agent (`mlsysops-nodeagent`)."""

    node_name: str = field(default="", metadata=doc("Name reported in the inventory; '' for the host name."))
    log_level: str = field(
        default="info", metadata=doc("Log level on stderr.", one_of("debug", "info", "warning", "error"))
    )
    runtime_dir: str = field(
        default="/run/mlsysops",
        metadata=doc(
            "Journal of originals and desired state. On tmpfs on purpose: after a reboot the "
            "kernel's values are the originals again.",
            absolute,
        ),
    )
    restore_on_shutdown: bool = field(
        default=False,
        metadata=doc(
            "false (default, like TuneD's rollback=not_on_exit): applied settings stay across "
            "a stop or restart and are re-adopted (verified, drifted knobs written again) on "
            "start, the journal keeping the originals; true: restore every original on "
            "SIGTERM/SIGINT. `mlsysops node reset` always restores."
        ),
    )
    listen: ListenConfig = field(default_factory=ListenConfig, metadata=doc("gRPC listeners."))
    host: HostConfig = field(default_factory=HostConfig, metadata=doc("Host interfaces."))
    drift: DriftConfig = field(default_factory=DriftConfig, metadata=doc("Drift checking."))
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig, metadata=doc("Telemetry."))
    mechanisms: dict[str, MechanismConfig] = field(
        default_factory=dict,
        metadata=doc("Per mechanism plugin (cpufreq, cgroups, network, ...): `enabled`, `options`."),
    )
    runtimes: RuntimesConfig = field(
        default_factory=RuntimesConfig, metadata=doc("Runtime handlers and workloads.")
    )
    limits: LimitsConfig = field(default_factory=LimitsConfig, metadata=doc("Request limits."))
    authz: AuthzConfig = field(default_factory=AuthzConfig, metadata=doc("Authorisation."))


# ---------------------------------------------------------------- loading


def load_config(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> AgentConfig:
    """Read `path` (or the default file, if it exists), apply dotted-key `overrides` (from flags)."""
    raw: Any = {}
    source = path or DEFAULT_PATH
    if path is not None or DEFAULT_PATH.exists():
        try:
            raw = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
        except FileNotFoundError as exc:
            raise ConfigError(str(source), "config file does not exist") from exc
        except OSError as exc:
            raise ConfigError(str(source), f"cannot read: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(str(source), f"not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(str(source), "expected a mapping of options at the top level")
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    return parse_config(raw)


def parse_config(raw: Mapping[str, Any]) -> AgentConfig:
    config = _build(AgentConfig, raw, "")
    _check_listeners(config.listen)
    return config


def _check_listeners(listen: ListenConfig) -> None:
    tls = listen.tls
    if tls.enabled:
        missing = [n for n in ("cert", "key", "client_ca") if not getattr(tls, n)]
        if missing:
            raise ConfigError(f"listen.tls.{missing[0]}", "cert, key and client_ca go together (mutual TLS)")
    if listen.tcp and not tls.enabled and not listen.insecure:
        raise ConfigError(
            "listen.tcp",
            "refusing plain-text TCP: configure mutual TLS (listen.tls.cert/key/client_ca) "
            "or allow it explicitly with listen.insecure: true (flag --insecure)",
        )
    if listen.max_watchers >= listen.workers:
        raise ConfigError(
            "listen.max_watchers",
            f"must be below listen.workers ({listen.workers}): streams would starve the other calls",
        )
    if not listen.socket and not listen.tcp:
        raise ConfigError("listen", "nothing to listen on: set listen.socket or listen.tcp")


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = raw
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(prefix or "(top level)", "expected a mapping")
    known = {f.name: f for f in fields(cls)}
    for name in raw:
        if name not in known:
            raise ConfigError(join_key(prefix, str(name)), f"unknown option (known: {', '.join(known)})")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        key = join_key(prefix, name)
        try:
            converted = _convert(hints[name], value, key)
        except ConfigError as exc:
            if not (expect := known[name].metadata.get("expect")) or exc.key != key:
                raise
            yaml_hint = " (quote it: YAML reads 0660 as a number)" if isinstance(value, int) else ""
            raise ConfigError(key, f"expected {expect}{yaml_hint}") from None
        check = known[name].metadata.get("check")
        if check is not None and converted is not None and (reason := check(converted)):
            raise ConfigError(key, reason)
        kwargs[name] = converted
    return cls(**kwargs)


def _convert(tp: Any, value: Any, key: str) -> Any:
    if is_dataclass(tp):
        return _build(tp, value, key)  # type: ignore[arg-type]
    if isinstance(tp, types.UnionType):  # X | None
        if value is None:
            return None
        (inner,) = (t for t in typing.get_args(tp) if t is not type(None))
        return _convert(inner, value, key)
    if typing.get_origin(tp) is dict:
        _, item_type = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise ConfigError(key, "expected a mapping")
        return {str(k): _convert(item_type, v, join_key(key, str(k))) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, "expected true or false")
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, str):
        return value
    raise ConfigError(key, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def join_key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _type_name(tp: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, str(tp))
