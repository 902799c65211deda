"""`mlsysops devices ...`: far-edge devices, through the running bridge's control socket.

list/show/set/update/monitor talk to the bridge (faredge.control); `set` validates every key=value
before anything is sent. With `--api URL` (or MLSYSOPS_API_URL), list/show/set/unset go through
the controller's REST API instead (mlsysops.restapi), which reaches the bridge for you.
`provision` works on the broker's files directly (it is what you run before the device, or
even the bridge, exists).
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from faredge.broker import BrokerLayout, BrokerSettings
from faredge.control import ControlClient
from faredge.errors import FarEdgeError, Invalid
from faredge.flashing import commands as deploy_commands
from faredge.protocol.messages import check_device_id
from faredge.protocol.settings import KNOBS, parse_assignments
from faredge.provision import BOARDS, init_broker, provision_device
from mlsysops.output import emit, output_option, table
from mlsysops.restapi import RestClient, RestError

DEFAULT_SOCKET = "/run/mlsysops-faredge/faredge.sock"
DEFAULT_BROKER_DIR = "/etc/mlsysops/faredge/broker"
F = TypeVar("F", bound=Callable[..., Any])


def _mapped_errors(fn: F) -> F:
    """The one place bridge errors become CLI messages (exit status 1, no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Invalid as exc:
            raise click.ClickException(f"invalid {exc.field}: {exc.reason}") from None
        except (FarEdgeError, RestError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


class RestDevices:
    """The control socket's list/show/set/unset requests, answered by the REST API's /api/v1/devices."""

    def __init__(self, url: str) -> None:
        self.api = RestClient(url)

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        op, device = request.get("op"), request.get("id")
        if op == "list":
            return {"ok": True, "devices": self.api.get("/api/v1/devices")}
        if op == "show":
            return {"ok": True, "device": self.api.get(f"/api/v1/devices/{device}")}
        if op == "set":
            return {
                "ok": True,
                "device": self.api.put(f"/api/v1/devices/{device}/twin", {"settings": request["settings"]}),
            }
        if op == "unset":
            return {
                "ok": True,
                "device": self.api.post(f"/api/v1/devices/{device}/twin/unset", {"keys": request["keys"]}),
            }
        raise click.UsageError(f"{op} works on the bridge's host only (drop --api)")


def _client(ctx: click.Context) -> ControlClient:
    return ControlClient(Path(ctx.obj["socket"]))


def _devices(ctx: click.Context) -> ControlClient | RestDevices:
    """The bridge's socket, or the REST API with --api (list, show, set, unset)."""
    return RestDevices(ctx.obj["api"]) if ctx.obj.get("api") else _client(ctx)


def _age(ts: float) -> str:
    if not ts:
        return "never"
    seconds = max(0, int(time.time() - ts))
    return (
        f"{seconds}s" if seconds < 120 else f"{seconds // 60}m" if seconds < 7200 else f"{seconds // 3600}h"
    )


def _list_table(devices: list[dict[str, Any]]) -> str:
    rows = [
        (
            d["id"],
            d["transport"],
            d["board"],
            d["fw"],
            "yes" if d["online"] else "no",
            _age(d["live"]["last_seen"] or d["last_seen"]),
            ",".join(d["sensors"]),
            f"{d['twin']['reported_version']}/{d['twin']['desired_version']}",
            _ota(d.get("ota")),
        )
        for d in devices
    ]
    return table(rows, ["id", "transport", "board", "fw", "online", "seen", "sensors", "twin", "ota"])


def _ota(ota: dict[str, Any] | None) -> str:
    """The latest update in one cell: `confirmed 1.2.0#3042`, `failed(signature) 1.2.0#3043`."""
    if not ota:
        return "-"
    state = f"{ota['state']}({ota['reason']})" if ota.get("reason") else ota["state"]
    if ota["state"] == "downloading" and ota.get("total_bytes"):
        state += f" {100 * ota['done_bytes'] // ota['total_bytes']}%"
    return f"{state} {ota['version']}#{ota['release']}"


def _show_table(d: dict[str, Any]) -> str:
    twin, live = d["twin"], d["live"]
    rows = [
        ("id", d["id"]),
        ("transport", d["transport"] + (f" ({d['port']})" if d["port"] else "")),
        ("board", d["board"]),
        ("firmware", d["fw"]),
        ("boot", d["boot"]),
        ("online", "yes" if d["online"] else "no"),
        ("last seen", _age(live["last_seen"] or d["last_seen"])),
        ("uptime (s)", live["up"]),
        ("mem free", live["mem_free"]),
        ("cpu freq", live["freq"]),
        *((f"reading {k}", v) for k, v in sorted(live["readings"].items())),
        ("desired", f"v{twin['desired_version']} {json.dumps(twin['desired'], sort_keys=True)}"),
        ("reported", f"v{twin['reported_version']} {json.dumps(twin['reported'], sort_keys=True)}"),
        ("twin errors", json.dumps(twin["errors"], sort_keys=True) if twin["errors"] else ""),
        ("in sync", "yes" if d["in_sync"] else "no"),
    ]
    return table(rows, ["field", "value"])


@click.group()
@click.option(
    "--socket",
    "socket_path",
    envvar="MLSYSOPS_FAREDGE_SOCKET",
    default=DEFAULT_SOCKET,
    show_default=True,
    help="Control socket of the running bridge.",
)
@click.option(
    "--api",
    "api_url",
    envvar="MLSYSOPS_API_URL",
    default=None,
    metavar="URL",
    help="list/show/set/unset through the REST API instead (token from $MLSYSOPS_API_TOKEN).",
)
@click.pass_context
def devices(ctx: click.Context, socket_path: str, api_url: str | None) -> None:
    """Far-edge devices (MQTT and serial) managed by the bridge mlsysops-faredge."""
    ctx.obj = {"socket": socket_path, "api": api_url}


@devices.command("list")
@output_option
@click.pass_context
@_mapped_errors
def list_devices(ctx: click.Context, output_format: str) -> None:
    """All known devices with liveness and twin versions (reported/desired)."""
    emit(_devices(ctx).call({"op": "list"})["devices"], output_format, _list_table)


@devices.command("show")
@click.argument("device")
@output_option
@click.pass_context
@_mapped_errors
def show_device(ctx: click.Context, device: str, output_format: str) -> None:
    """One device: identity, latest telemetry, desired and reported twin."""
    emit(_devices(ctx).call({"op": "show", "id": device})["device"], output_format, _show_table)


@devices.command("set", epilog="Keys: " + "; ".join(f"{k.name}: {k.doc}" for k in KNOBS.values()))
@click.argument("device")
@click.argument("assignments", nargs=-1, required=True)
@output_option
@click.pass_context
@_mapped_errors
def set_device(ctx: click.Context, device: str, assignments: tuple[str, ...], output_format: str) -> None:
    """Change desired settings: DEVICE key=value [key=value ...] (validated before sending)."""
    settings = parse_assignments(assignments)
    _emit_twin(device, _devices(ctx).call({"op": "set", "id": device, "settings": settings}), output_format)


@devices.command("unset")
@click.argument("device")
@click.argument("keys", nargs=-1, required=True)
@output_option
@click.pass_context
@_mapped_errors
def unset_device(ctx: click.Context, device: str, keys: tuple[str, ...], output_format: str) -> None:
    """Remove desired settings: DEVICE key [key ...] (the device keeps its current values)."""
    _emit_twin(device, _devices(ctx).call({"op": "unset", "id": device, "keys": list(keys)}), output_format)


def _emit_twin(device: str, reply: dict[str, Any], output_format: str) -> None:
    twin = reply["device"]["twin"]
    emit(
        {
            "id": device,
            "desired_version": twin["desired_version"],
            "desired": twin["desired"],
            "reported_version": twin["reported_version"],
        },
        output_format,
        _set_table,
    )


def _set_table(result: dict[str, Any]) -> str:
    return table(
        [
            (
                result["id"],
                f"v{result['desired_version']}",
                json.dumps(result["desired"], sort_keys=True),
                f"v{result['reported_version']}",
            )
        ],
        ["id", "desired", "settings", "reported"],
    )


@devices.command("provision")
@click.argument("device")
@click.option(
    "--broker-dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_BROKER_DIR,
    show_default=True,
    help="Mosquitto config dir (mosquitto.conf, passwd, acl); initialised when new.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Broker address the device connects to.")
@click.option("--port", type=click.IntRange(1, 65535), default=1883, show_default=True)
@click.option("--board", type=click.Choice(BOARDS), default="esp32", show_default=True)
@click.option("--ca", default=None, help="CA certificate path on the device: enables TLS in its config.")
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Also write the device's config.json here."
)
@output_option
@_mapped_errors
def provision(
    device: str,
    broker_dir: Path,
    host: str,
    port: int,
    board: str,
    ca: str | None,
    out: Path | None,
    output_format: str,
) -> None:
    """Create DEVICE's credentials, password entry and ACL; print its config.json."""
    check_device_id(device, "device")  # before the broker dir is touched: bad input changes nothing
    layout = BrokerLayout(broker_dir)
    init_broker(layout, BrokerSettings(port=port, host=host))
    result = provision_device(layout, device, board=board, host=host, port=port, ca=ca)
    if out is not None:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(result.config, fh, indent=2)
    if output_format == "table":
        click.echo(
            f"device {device}: password set in {layout.passwd}, ACL in {layout.acl}"
            f"{' (broker reloaded)' if result.reloaded else ''}"
        )
        click.echo(f"config.json for the device ({result.config_file}):")
        click.echo(json.dumps(result.config, indent=2))
    else:
        emit(
            {
                "id": device,
                "config_file": str(result.config_file),
                "reloaded": result.reloaded,
                "config": result.config,
            },
            output_format,
        )


def rollout_states(plan: dict[str, Any], devices: list[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """Each planned device's OTA state for the plan's release (None: not reported yet)."""
    releases = {p["id"]: p["release"] for p in plan["devices"]}
    out: dict[str, dict[str, Any] | None] = dict.fromkeys(releases)
    for d in devices:
        ota = d.get("ota")
        if d["id"] in releases and ota and ota["release"] == releases[d["id"]]:
            out[d["id"]] = ota
    return out


FINISHED = ("confirmed", "rolled_back", "failed")


@devices.command("update")
@click.argument("device", required=False)
@click.option("--all", "all_devices", is_flag=True, help="Every MQTT device the bridge knows.")
@click.option(
    "--app",
    "app_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    required=True,
    help="The app (firmware) directory; read by the bridge, on its host.",
)
@click.option(
    "--parallel",
    type=click.IntRange(1),
    default=4,
    show_default=True,
    help="Devices at a time after the canary.",
)
@click.option(
    "--max-failures",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Devices that may fail or roll back before the rollout stops.",
)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow the rollout until it ends.")
@click.option(
    "--timeout", type=click.FloatRange(0), default=900.0, show_default=True, help="Seconds to follow it."
)
@output_option
@click.pass_context
@_mapped_errors
def update(
    ctx: click.Context,
    device: str | None,
    all_devices: bool,
    app_dir: Path,
    parallel: int,
    max_failures: int,
    wait: bool,
    timeout: float,
    output_format: str,
) -> None:
    """Over-the-air update of DEVICE (or --all) over MQTT: signed, A/B, canary first.

    Exits with status 1 when a device failed or rolled back (or when --timeout ran out)."""
    if all_devices == (device is not None):
        raise click.UsageError("give one DEVICE or --all")
    client = _client(ctx)
    plan = client.call(
        {
            "op": "update",
            "ids": None if all_devices else [device],
            "app": str(app_dir.resolve()),
            "parallel": parallel,
            "max_failures": max_failures,
        }
    )
    states = rollout_states(plan, [])
    deadline = time.monotonic() + timeout
    shown: dict[str, str] = {}
    while wait:
        states = rollout_states(plan, client.call({"op": "list"})["devices"])
        for dev_id, ota in states.items():
            cell = _ota(ota)
            if output_format == "table" and ota and shown.get(dev_id) != cell:
                click.echo(f"{time.strftime('%H:%M:%S')} {dev_id:16} {cell}")
                shown[dev_id] = cell
        if all(o and o["state"] in FINISHED for o in states.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    result = {"devices": plan["devices"], "canary": plan["canary"], "states": states}
    if output_format != "table":
        emit(result, output_format)
    if wait and not all(o and o["state"] == "confirmed" for o in states.values()):
        raise click.exceptions.Exit(1)


@devices.command("ota-key")
@click.argument("device")
@output_option
@click.pass_context
@_mapped_errors
def ota_key(ctx: click.Context, device: str, output_format: str) -> None:
    """DEVICE's OTA key: its config.json's `ota_key` (a serial deploy of that config installs it)."""
    reply = _client(ctx).call({"op": "ota_key", "id": device})
    if output_format == "table":
        click.echo(reply["ota_key"])
    else:
        emit({"id": device, "ota_key": reply["ota_key"]}, output_format)


@devices.command("monitor")
@click.option("--count", type=click.IntRange(1), default=None, help="Stop after this many events.")
@output_option
@click.pass_context
@_mapped_errors
def monitor(ctx: click.Context, count: int | None, output_format: str) -> None:
    """Follow live events: births, telemetry, twin changes, offline."""
    for seen, event in enumerate(_client(ctx).monitor(), start=1):
        if output_format == "table":
            rest = {k: v for k, v in event.items() if k not in ("event", "id", "missed")}
            click.echo(
                f"{time.strftime('%H:%M:%S')} {event.get('event', '?'):9} {event.get('id', ''):16} "
                f"{json.dumps(rest, sort_keys=True)}"
            )
        else:
            click.echo(json.dumps(event, sort_keys=True))
        if count is not None and seen >= count:
            return


for _command in deploy_commands(_mapped_errors):
    devices.add_command(_command)
