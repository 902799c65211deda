"""`mlsysops node`: talk to a node agent (inventory, state, apply, reset, telemetry, events).

Layers: click verbs -> one call each through the shared node-API client (mlsysops.nodeapi) ->
rendering (nodeagent.cli_render) through mlsysops.output; profile files are read by
nodeagent.profile_file. Every verb fails the same way: the client's domain errors carry the
message, and nodeagent.cli_connection gives each kind its exit code (listed in `node --help`).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import cast

import click
import yaml

from mlsysops.nodeapi import (
    DEFAULT_TARGET,
    TARGET_ENV,
    TlsFiles,
)
from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb
from mlsysops.output import output_option
from nodeagent.cli_connection import CliError, Connection, pass_connection, show_message, to_dict
from nodeagent.cli_render import (
    render_inventory,
    render_runtimes,
    render_state,
    render_switch,
    render_telemetry,
    render_workloads,
    render_writes,
)
from nodeagent.profile_file import ProfileError, load_profile

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
    try:
        profile = load_profile(profile_file)
    except ProfileError as exc:
        raise CliError(str(exc), 2) from exc
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
