"""`mlsysops node`: talk to a node agent (inventory, state, apply, reset, telemetry, events).

Layers: click verbs -> one call each through the shared node-API client (mlsysops.nodeapi) ->
rendering through mlsysops.output. Its domain errors carry the message; `EXIT_CODES` gives each
kind its exit code, so every verb fails the same way:

    0 ok · 1 agent-side failure · 2 bad input (file, flag, or INVALID_ARGUMENT from the agent)
    3 agent unreachable or too slow · 4 not possible on this node · 5 refused (auth)
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import click
import yaml
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from mlsysops.nodeapi import (
    DEFAULT_TARGET,
    TARGET_ENV,
    Busy,
    NodeAgentClient,
    NodeApiError,
    NotPossible,
    Refused,
    Rejected,
    TargetError,
    TlsFiles,
    Unreachable,
)
from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb
from mlsysops.output import emit, output_option, table

# ------------------------------------------------------------------------------- errors


class CliError(click.ClickException):
    """A failure with its exit code (see the module docstring)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares a ClassVar; per error here


#: The exit code of each kind of node-API failure; the message is the error's own.
EXIT_CODES: dict[type[NodeApiError], int] = {
    TargetError: 2,
    Rejected: 2,
    Unreachable: 3,
    Busy: 3,
    NotPossible: 4,
    Refused: 5,
}


def cli_error(exc: NodeApiError) -> CliError:
    return CliError(str(exc), EXIT_CODES.get(type(exc), 1))


# ------------------------------------------------------------------------------- connection


@dataclass(frozen=True)
class Connection:
    """Where the agent is; each verb opens one client for its calls and closes it after."""

    target: str
    tls: TlsFiles | None
    timeout: float

    @contextmanager
    def client(self) -> Iterator[NodeAgentClient]:
        """A client closed afterwards; node-API errors become CliError (message, exit code) here."""
        try:
            with NodeAgentClient(self.target, self.tls, self.timeout) as client:
                yield client
        except NodeApiError as exc:
            raise cli_error(exc) from exc


pass_connection = click.make_pass_decorator(Connection)


def show_message(message: Message, output_format: str, render_table: Callable[[Any], str]) -> None:
    """Emit a response: its proto JSON mapping for json/yaml, render_table(message) otherwise."""
    emit(to_dict(message), output_format, lambda _: render_table(message))


def to_dict(message: Message) -> dict[str, Any]:
    """The proto JSON mapping with proto field names: the same shape as a profile file."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


# ------------------------------------------------------------------------------- profile files


class ProfileError(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 2)


def load_profile(path: Path) -> pb.Profile:
    """Read a YAML profile (the proto JSON mapping of Profile); errors name the file and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path} is not a text file ({exc.reason})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ProfileError(f"{path} is not valid YAML{line}: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ProfileError(f"{path}: a profile is a YAML mapping (cpufreq, cgroups, network), not {found}")
    try:
        return json_format.ParseDict(data, pb.Profile())
    except json_format.ParseError as exc:
        descriptor = cast(Descriptor, pb.Profile.DESCRIPTOR)  # the stubs also allow upb's twin class
        field, reason = locate_parse_error(data, descriptor, "") or ("", _clean(str(exc)))
        raise ProfileError(f"{path}: {field or 'profile'}: {reason}") from exc


def locate_parse_error(data: Any, descriptor: Descriptor, path: str) -> tuple[str, str] | None:
    """The path (e.g. `cgroups.groups[1].cpu_quota_us`) and reason of the first field of data
    that the proto JSON mapping rejects; protobuf's own message lacks the list indices."""
    if not isinstance(data, dict):
        return path, f"must be a mapping, not {type(data).__name__}"
    known = {f.name: f for f in descriptor.fields} | {f.json_name: f for f in descriptor.fields}
    for key, value in data.items():
        here = f"{path}.{key}" if path else str(key)
        field = known.get(key)
        if field is None:
            names = ", ".join(f.name for f in descriptor.fields)
            return here, f"unknown field (known: {names})"
        problem = _check_field(field, value, here)
        if problem is not None:
            return problem
    return _parse_alone(data, descriptor, path)  # e.g. two members of a oneof


def _check_field(field: FieldDescriptor, value: Any, here: str) -> tuple[str, str] | None:
    nested: Descriptor | None = field.message_type
    if (
        nested is None
        or nested.GetOptions().map_entry
        or nested.file.package == "google.protobuf"
        or value is None
    ):  # scalars, enums, maps, Struct: protobuf judges
        return _parse_alone({field.name: value}, cast(Descriptor, field.containing_type), here)
    if field.is_repeated:
        if not isinstance(value, list):
            return here, f"must be a list, not {type(value).__name__}"
        for i, item in enumerate(value):
            problem = locate_parse_error(item, nested, f"{here}[{i}]")
            if problem is not None:
                return problem
        return None
    return locate_parse_error(value, nested, here)


def _parse_alone(data: dict[str, Any], descriptor: Descriptor, here: str) -> tuple[str, str] | None:
    try:
        json_format.ParseDict(data, message_factory.GetMessageClass(descriptor)())
    except json_format.ParseError as exc:
        return here, _clean(str(exc))
    return None


def _clean(message: str) -> str:
    """protobuf's reason without its nesting prefixes and the index-less location."""
    message = re.sub(r"Failed to parse \w+ field: ", "", message)
    message = re.sub(r' at "?[A-Z][\w.\[\]]*"?(?=\.*$|\n)', "", message)
    message = re.sub(r"invalid literal for int\(\) with base 10: ", "not an integer: ", message)
    return message.split("\n")[0].rstrip(". ") or "invalid value"


# ------------------------------------------------------------------------------- verbs


@click.group()
@click.option(
    "--target",
    envvar=TARGET_ENV,
    default=DEFAULT_TARGET,
    show_default=True,
    help=f"Node agent: unix:/path/to.sock or host:port (env {TARGET_ENV}).",
)
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), help="Client certificate (PEM).")
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), help="Client key (PEM).")
@click.option(
    "--tls-ca", type=click.Path(dir_okay=False, path_type=Path), help="CA of the agent's cert (PEM)."
)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="Seconds.")
@click.pass_context
def node(
    ctx: click.Context,
    target: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_ca: Path | None,
    timeout: float,
) -> None:
    """Inspect and configure a node through its node agent.

    Exit codes: 0 ok, 1 agent failure, 2 bad input, 3 agent unreachable, 4 not possible on
    this node, 5 refused.
    """
    tls = TlsFiles(tls_cert, tls_key, tls_ca) if any((tls_cert, tls_key, tls_ca)) else None
    ctx.obj = Connection(target, tls, timeout)


@node.command()
@output_option
@pass_connection
def info(conn: Connection, output_format: str) -> None:
    """What this node has: CPUs, cgroups, interfaces, mechanisms, runtimes, devices."""
    with conn.client() as client:
        inventory = client.inventory()
    show_message(inventory, output_format, render_inventory)


@node.command()
@output_option
@pass_connection
def state(conn: Connection, output_format: str) -> None:
    """The desired profile's knobs with their actual and original values, and drift."""
    with conn.client() as client:
        node_state = client.state()
    show_message(node_state, output_format, render_state)


@node.command()
@click.option(
    "-f", "--file", "profile_file", required=True, type=click.Path(path_type=Path), help="Profile YAML."
)
@click.option("--dry-run", is_flag=True, help="Validate and list the planned writes; write nothing.")
@output_option
@pass_connection
def apply(conn: Connection, profile_file: Path, dry_run: bool, output_format: str) -> None:
    """Apply a profile: validated whole, then only what differs is written (all-or-nothing)."""
    profile = load_profile(profile_file)
    with conn.client() as client:
        response = client.apply(profile, dry_run=dry_run, requester="cli")
    done = f"{response.writes_performed} writes performed, generation {response.generation}"
    show_message(response, output_format, lambda r: render_writes(r, dry_run, done))


@node.command()
@click.option("--dry-run", is_flag=True, help="List the writes that would restore the originals.")
@output_option
@pass_connection
def reset(conn: Connection, dry_run: bool, output_format: str) -> None:
    """Restore every original value the agent journaled and forget the desired profile."""
    with conn.client() as client:
        response = client.reset(dry_run=dry_run)
    done = f"{response.writes_performed} writes performed: originals restored"
    show_message(response, output_format, lambda r: render_writes(r, dry_run, done))


@node.group(invoke_without_command=True)
@click.pass_context
def telemetry(ctx: click.Context) -> None:
    """Show or change the telemetry collectors (live, no restart)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(show)


@telemetry.command()
@output_option
@pass_connection
def show(conn: Connection, output_format: str = "table") -> None:
    """Collectors, whether they run, how often, and the /metrics endpoint."""
    with conn.client() as client:
        config = client.telemetry_config()
    show_message(config, output_format, render_telemetry)


@telemetry.command(name="set")
@click.argument("name")
@click.option("--enable/--disable", default=None, help="Switch the collector on or off.")
@click.option("--interval", help="Sampling interval, e.g. 500ms, 5s, 2m, 1h.")
@output_option
@pass_connection
def set_collector(
    conn: Connection, name: str, enable: bool | None, interval: str | None, output_format: str
) -> None:
    """Change one collector; what is not given keeps its current value."""
    if enable is None and interval is None:
        raise click.UsageError("nothing to change: give --enable/--disable and/or --interval")
    interval_ms = parse_interval(interval) if interval is not None else None
    with conn.client() as client:
        current = client.telemetry_config()
        collector = next((c for c in current.collectors if c.name == name), None)
        if collector is None:
            known = ", ".join(c.name for c in current.collectors)
            raise CliError(f"unknown collector {name!r} (known: {known})", 2)
        if enable is not None:
            collector.enabled = enable
        if interval_ms is not None:
            collector.interval_ms = interval_ms
        config = client.set_telemetry_config([collector])
    show_message(config, output_format, render_telemetry)


# ------------------------------------------------------------------------------- runtimes, workloads


@node.command()
@click.option("--refresh", is_flag=True, help="Run the probe containers again.")
@output_option
@pass_connection
def runtimes(conn: Connection, refresh: bool, output_format: str) -> None:
    """Runtime handlers (runc, runsc, crun, kata, ...): available or why not, proven by a probe."""
    with conn.client() as client:
        found = client.runtimes(refresh=refresh)
    show_message(
        pb.ListRuntimesResponse(runtimes=found), output_format, lambda r: render_runtimes(r.runtimes)
    )


@node.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("args", nargs=-1, required=True)
@click.option(
    "--image", required=True, help="Image reference (in containerd, or imported with --image-tarball)."
)
@click.option("--handler", default="runc", show_default=True, help="Runtime handler (see `node runtimes`).")
@click.option("--image-tarball", help="OCI layout or docker save tarball on the node to import first.")
@click.option("--env", "env", multiple=True, help="KEY=value; repeatable.")
@click.option(
    "--mount", "mounts", multiple=True, help="SOURCE:TARGET[:rw] (read-only by default); repeatable."
)
@click.option(
    "--cgroup", default="", help="Parent cgroup below the agent's root (limits applied there follow)."
)
@click.option("--netns", default="", help="Named network namespace to join.")
@click.option("--cpu-quota-us", type=click.IntRange(min=0), default=0, help="0: unlimited.")
@click.option("--memory-max-bytes", type=click.IntRange(min=0), default=0, help="0: unlimited.")
@click.option("--readiness", default="", help="Command run in the task (shell words); ready when it exits 0.")
@output_option
@pass_connection
def run(
    conn: Connection,
    name: str,
    args: Sequence[str],
    image: str,
    handler: str,
    image_tarball: str | None,
    env: Sequence[str],
    mounts: Sequence[str],
    cgroup: str,
    netns: str,
    cpu_quota_us: int,
    memory_max_bytes: int,
    readiness: str,
    output_format: str,
) -> None:
    """Run a workload NAME with ARGS (after --) on this node, verified running (and ready)."""
    spec = pb.WorkloadSpec(
        name=name,
        image=image,
        handler=handler,
        args=list(args),
        env=list(env),
        mounts=[parse_mount(m) for m in mounts],
        cgroup=cgroup,
        netns=netns,
        cpu_quota_us=cpu_quota_us,
        memory_max_bytes=memory_max_bytes,
        readiness=shlex.split(readiness),
    )
    with conn.client() as client:
        workload = client.run_workload(spec, image_tarball=image_tarball or "")
    show_message(workload, output_format, lambda w: render_workloads([w]))


def parse_mount(text: str) -> pb.WorkloadMount:
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise click.BadParameter(f"{text!r}: use SOURCE:TARGET or SOURCE:TARGET:rw", param_hint="--mount")
    return pb.WorkloadMount(source=parts[0], target=parts[1], readonly=len(parts) == 2 or parts[2] == "ro")


@node.command(name="stop")
@click.argument("name")
@output_option
@pass_connection
def stop_workload(conn: Connection, name: str, output_format: str) -> None:
    """Stop a workload and remove it."""
    with conn.client() as client:
        workload = client.stop_workload(name)
    show_message(workload, output_format, lambda w: f"{w.spec.name}: {w.status}")


@node.command()
@output_option
@pass_connection
def ps(conn: Connection, output_format: str) -> None:
    """The workloads the agent runs, their handler and status."""
    with conn.client() as client:
        found = client.workloads()
    show_message(
        pb.ListWorkloadsResponse(workloads=found), output_format, lambda r: render_workloads(r.workloads)
    )


@node.command()
@click.argument("name")
@click.option("--tail-bytes", type=click.IntRange(min=0), default=0, help="0: the last 64 KiB.")
@pass_connection
def logs(conn: Connection, name: str, tail_bytes: int) -> None:
    """A workload's output (stdout and stderr)."""
    with conn.client() as client:
        click.echo(client.workload_logs(name, tail_bytes=tail_bytes), nl=False)


@node.command(name="switch-runtime")
@click.argument("name")
@click.argument("handler")
@click.option("--force", is_flag=True, help="Try a handler reported unavailable (rollback still protects).")
@output_option
@pass_connection
def switch_runtime(conn: Connection, name: str, handler: str, force: bool, output_format: str) -> None:
    """Move workload NAME to HANDLER, verified; on failure it is back on its old handler (exit 1)."""
    with conn.client() as client:
        result = client.switch_runtime(name, handler, force=force)
    show_message(result, output_format, render_switch)
    if result.outcome not in ("switched", "unchanged") or result.error:
        raise CliError(f"{name}: switch to {handler} {result.outcome}: {result.error}", 1)


EVENT_KINDS: dict[str, pb.Event.Kind] = {
    name.lower(): cast("pb.Event.Kind", number)
    for name, number in pb.Event.Kind.items()
    if number != pb.Event.KIND_UNSPECIFIED
}


@node.command()
@click.option("--kind", "kinds", multiple=True, type=click.Choice(sorted(EVENT_KINDS)), help="Repeatable.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many events.")
@output_option
@pass_connection
def events(conn: Connection, kinds: Sequence[str], count: int | None, output_format: str) -> None:
    """Follow the agent's events (applied, drift, errors, ...) from now on; Ctrl-C stops."""
    printer = _event_printer(output_format)
    try:
        with conn.client() as client, closing(client.watch_events([EVENT_KINDS[k] for k in kinds])) as stream:
            for seen, event in enumerate(stream, start=1):
                printer(event)
                if count is not None and seen >= count:
                    break
    except KeyboardInterrupt:
        return


def _event_printer(output_format: str) -> Callable[[pb.Event], None]:
    if output_format == "json":
        return lambda e: click.echo(json.dumps(to_dict(e), sort_keys=True), nl=True)
    if output_format == "yaml":
        return lambda e: click.echo("---\n" + yaml.safe_dump(to_dict(e), sort_keys=False).rstrip())
    header = [False]

    def line(event: pb.Event) -> None:
        if not header[0]:
            click.echo(EVENT_LINE.format("TIME", "KIND", "MECHANISM", "KEY", "GEN", "MESSAGE"))
            header[0] = True
        when = event.time.ToDatetime().isoformat(timespec="milliseconds") if event.HasField("time") else "-"
        kind = pb.Event.Kind.Name(event.kind).lower()
        click.echo(
            EVENT_LINE.format(
                when, kind, event.mechanism or "-", event.key or "-", event.generation, event.message
            ).rstrip()
        )

    return line


EVENT_LINE = "{:<23}  {:<20}  {:<9}  {:<32}  {:>4}  {}"

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def parse_interval(text: str) -> int:
    """'500ms', '5s', '1.5s', '2m', '1h' -> milliseconds; a bare number is ambiguous, refused."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*", text)
    if match is None:
        raise click.BadParameter(
            f"{text!r} is not a duration: use a number with a unit, e.g. 500ms, 5s, 2m, 1h",
            param_hint="--interval",
        )
    return round(float(match.group(1)) * _UNITS_MS[match.group(2)])


# ------------------------------------------------------------------------------- tables


def _opt(message: Message, field: str) -> str:
    return str(getattr(message, field)) if message.HasField(field) else "-"


def render_writes(response: pb.ApplyResponse | pb.ResetResponse, dry_run: bool, done: str) -> str:
    rows = [(w.mechanism, w.key, _opt(w, "before"), _opt(w, "after")) for w in response.writes]
    summary = f"dry run: {len(rows)} writes planned, nothing written" if dry_run else done
    body = table(rows, ["mechanism", "key", "before", "after"]) + "\n" if rows else ""
    return body + summary


def render_state(s: pb.NodeState) -> str:
    rows = [
        (
            k.mechanism,
            k.key,
            _opt(k, "desired"),
            _opt(k, "actual"),
            _opt(k, "original"),
            "yes" if k.drifted else "",
        )
        for k in s.knobs
    ]
    last = s.last_apply.ToDatetime().isoformat(timespec="seconds") if s.HasField("last_apply") else "never"
    head = f"generation {s.generation}, {s.drifted} drifted, last apply {last}"
    if not rows:
        return head + "\nno desired profile: nothing is managed"
    return head + "\n" + table(rows, ["mechanism", "key", "desired", "actual", "original", "drifted"])


def render_telemetry(config: pb.TelemetryConfig) -> str:
    rows = [(c.name, "on" if c.enabled else "off", _duration(c.interval_ms)) for c in config.collectors]
    endpoint = config.metrics_endpoint or "off"
    return table(rows, ["collector", "enabled", "interval"]) + f"\nmetrics endpoint: {endpoint}"


def _duration(ms: int) -> str:
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _khz(value: int) -> str:
    return f"{value / 1e6:g} GHz" if value >= 1_000_000 else f"{value / 1e3:g} MHz"


def render_inventory(inv: pb.Inventory) -> str:
    sections = [
        table(
            [
                (
                    inv.node_name,
                    inv.architecture,
                    f"{inv.memory_bytes / 2**30:.1f} GiB",
                    inv.agent_version,
                    inv.api_version,
                )
            ],
            ["node", "arch", "memory", "agent", "api"],
        )
    ]
    cpus = [
        (
            c.id,
            c.governor,
            _khz(c.scaling_min_khz),
            _khz(c.scaling_max_khz),
            _khz(c.current_khz),
            " ".join(c.available_governors),
        )
        if c.cpufreq_available
        else (c.id, "no cpufreq", "", "", "", "")
        for c in inv.cpus
    ]
    sections.append(table(cpus, ["cpu", "governor", "min", "max", "current", "governors"]))
    controllers = [(c.name, c.version, c.mount) for c in inv.cgroup.controllers]
    sections.append(
        f"cgroup {inv.cgroup.version or '-'}, root {inv.cgroup.root or '-'}\n"
        + table(controllers, ["controller", "version", "mount"])
    )
    interfaces = [
        (i.name, i.netns or "-", i.state, i.mtu, i.root_qdisc or "-") for i in inv.network.interfaces
    ]
    sections.append(table(interfaces, ["interface", "netns", "state", "mtu", "qdisc"]))
    features = [(f.name, "yes" if f.supported else "no", f.reason) for f in inv.network.features]
    mechanisms = [(m.name, "yes" if m.available else "no", m.reason) for m in inv.mechanisms]
    sections.append(table(mechanisms, ["mechanism", "available", "reason"]))
    sections.append(table(features, ["feature", "supported", "reason"]))
    if inv.runtimes:
        sections.append(render_runtimes(inv.runtimes))
    if inv.devices:
        devices = [
            (d.id, d.kind, d.transport, "yes" if d.online else "no", ",".join(d.sensors)) for d in inv.devices
        ]
        sections.append(table(devices, ["device", "kind", "transport", "online", "sensors"]))
    return "\n\n".join(sections)


def render_runtimes(runtimes: Sequence[pb.Runtime]) -> str:
    rows = [
        (r.handler, "yes" if r.available else "no", r.runtime_class_name, r.version, r.reason)
        for r in runtimes
    ]
    return table(rows, ["runtime", "available", "runtimeclass", "version", "reason"])


def render_workloads(workloads: Sequence[pb.Workload]) -> str:
    rows = [
        (w.spec.name, w.spec.handler, w.status, w.pid or "-", w.spec.image, " ".join(w.spec.args))
        for w in workloads
    ]
    return (
        table(rows, ["workload", "handler", "status", "pid", "image", "command"]) if rows else "no workloads"
    )


def render_switch(result: pb.SwitchRuntimeResponse) -> str:
    lines = [f"{result.outcome}: now on {result.handler or 'nothing (down)'}"]
    lines += [f"  {step}" for step in result.steps]
    return "\n".join(lines + ([f"error: {result.error}"] if result.error else []))
