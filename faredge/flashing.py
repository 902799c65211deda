"""`mlsysops devices flash PORT | deploy DEVICE | console DEVICE`: code onto boards, a REPL.

`flash` opens a serial port itself; `deploy` and `console` ask the running bridge to hand over
the port of a device it owns (the link pauses, the device stays online in the registry, the
link resumes when we are done) and speak the same raw-REPL protocol through the control socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from faredge.channels.serial import PyserialPort
from faredge.control import ControlClient
from faredge.deploy.channel import ByteChannel
from faredge.deploy.flasher import FlashOptions, flash
from faredge.deploy.progress import TerminalProgress
from faredge.errors import Invalid, Unavailable
from faredge.virtual.firmware import firmware_dir, load_module
from mlsysops.output import emit, output_option, table

CONSOLE_EXIT = b"\x1d"  # Ctrl-]


def load_config(path: Path, app_dir: Path) -> dict[str, Any]:
    """The device config, checked by the app's own rules (its config.py) before the board is
    touched; Invalid names the field."""
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise Invalid("config", f"{path}: {exc}") from None
    rules = app_dir / "config.py"
    if rules.is_file():
        try:
            cfg = load_module("config", app_dir).check(cfg)
        except ValueError as exc:
            field, _, reason = str(exc).partition(": ")
            raise Invalid(f"config {field}", reason or "invalid") from None
    return dict(cfg)


def _report_table(r: dict[str, Any]) -> str:
    rows = [
        ("version", r["version"]),
        ("written", f"{len(r['written'])} files, {r['bytes']} bytes"),
        ("unchanged", len(r["skipped"])),
        ("deleted", ", ".join(r["deleted"]) or "-"),
        ("raw-paste", "yes" if r["raw_paste"] else "no"),
        ("birth", json.dumps(r["birth"], sort_keys=True) if r["birth"] else "-"),
        ("seconds", r["seconds"]["total"]),
    ]
    return table(rows, ["field", "value"])


def _deploy_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--app",
            "app_dir",
            type=click.Path(path_type=Path, file_okay=False),
            default=None,
            help="Directory to deploy (default: the bundled mlsysops firmware).",
        ),
        click.option(
            "--config",
            "config_path",
            type=click.Path(path_type=Path, dir_okay=False),
            default=None,
            help="Device config (config.json: identity, credentials), validated, written last.",
        ),
        click.option("--version", default=None, help="Release version (default: the app's FW_VERSION)."),
        click.option("--source", is_flag=True, help="Deploy .py sources, do not compile with mpy-cross."),
        click.option("--no-raw-paste", is_flag=True, help="Plain raw REPL even if the board has raw-paste."),
        click.option("--no-boot", is_flag=True, help="Leave the board in its REPL (no reboot, no birth)."),
        click.option(
            "--check-files",
            is_flag=True,
            help="Hash every file on the board even when its firmware says it runs this release.",
        ),
        output_option,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _run_flash(channel: ByteChannel, params: dict[str, Any]) -> None:
    app = params["app_dir"] or firmware_dir()
    config = load_config(params["config_path"], app) if params["config_path"] is not None else None
    options = FlashOptions(
        app,
        config=config,
        version=params["version"],
        compiled=not params["source"],
        paste=not params["no_raw_paste"],
        boot=not params["no_boot"],
        ask_running=not params["check_files"],
    )
    progress = TerminalProgress()
    try:
        report = flash(channel, options, progress)
    finally:
        progress.close()
    emit(report.as_dict(), params["output_format"], _report_table)


def _validated(params: dict[str, Any]) -> None:
    """Bad input is refused before a port is opened or a bridge asked for one."""
    app = params["app_dir"] or firmware_dir()
    if params["config_path"] is not None:
        load_config(params["config_path"], app)


def commands(mapped: Callable[..., Any]) -> list[click.Command]:
    """The commands, wrapped by the devices group's error mapping (`mapped`)."""

    @click.command("flash")
    @click.argument("port")
    @click.option("--baud", type=click.IntRange(1200), default=115200, show_default=True)
    @_deploy_options
    @mapped
    def flash_cmd(port: str, baud: int, **params: Any) -> None:
        """Deploy to the board on serial PORT: compile for its .mpy version, write changed
        files (verified by SHA-256, renamed into place), delete what the release dropped, write
        the config last, reboot and wait for the birth with the new version."""
        _validated(params)
        channel = PyserialPort(port, baud)
        channel.open()
        try:
            _run_flash(channel, params)
        finally:
            channel.close()

    @click.command("deploy")
    @click.argument("device")
    @_deploy_options
    @click.pass_context
    @mapped
    def deploy_cmd(ctx: click.Context, device: str, **params: Any) -> None:
        """Like `flash`, for a serial DEVICE whose port the running bridge owns: the bridge
        pauses its link, hands the port over and resumes (the device stays online)."""
        _validated(params)
        with ControlClient(Path(ctx.obj["socket"])).channel(device) as channel:
            _run_flash(channel, params)

    @click.command("console")
    @click.argument("device")
    @click.option(
        "--linger",
        type=click.FloatRange(0),
        default=1.0,
        show_default=True,
        help="When stdin is not a terminal: seconds of output to show after it ended.",
    )
    @click.option("--no-reboot", is_flag=True, help="On exit, leave the board in its REPL.")
    @click.pass_context
    @mapped
    def console_cmd(ctx: click.Context, device: str, linger: float, no_reboot: bool) -> None:
        """An interactive REPL on a serial DEVICE through the bridge (Ctrl-] leaves; the board is
        then soft-rebooted into its firmware, Ctrl-B Ctrl-D)."""
        with ControlClient(Path(ctx.obj["socket"])).channel(device) as channel:
            if sys.stdin.isatty():
                click.echo("console: Ctrl-] to leave", err=True)
            _console(channel, linger)
            if not no_reboot:
                channel.write(b"\x02\x04")

    return [flash_cmd, deploy_cmd, console_cmd]


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _console(channel: ByteChannel, linger: float) -> None:
    """stdin → the board, the board → stdout, until Ctrl-], or stdin's end plus `linger` s."""
    fd_in, out = sys.stdin.fileno(), sys.stdout.buffer
    ended_at: float | None = None
    with _raw_terminal(fd_in):
        while ended_at is None or time.monotonic() - ended_at < linger:
            if ended_at is None and select.select([fd_in], [], [], 0)[0]:
                data = os.read(fd_in, 1024)
                if not data:
                    ended_at = time.monotonic()
                elif CONSOLE_EXIT in data:
                    channel.write(data.split(CONSOLE_EXIT)[0])
                    return
                else:
                    channel.write(data)
            try:
                got = channel.read()
            except Unavailable:
                return
            if got:
                out.write(got)
                out.flush()
