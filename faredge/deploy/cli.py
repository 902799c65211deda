"""`mlsysops devices flash PORT`: deploy an app (default: our firmware) over a board's REPL line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from faredge.channels.serial import PyserialPort
from faredge.deploy.flasher import FlashOptions, FlashReport, flash
from faredge.deploy.progress import TerminalProgress
from faredge.errors import Invalid
from faredge.virtual.firmware import firmware_dir, load_module
from mlsysops.output import emit, output_option, table


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


def flash_command(mapped: Any) -> click.Command:
    """The command, wrapped by the group's error mapping (`mapped`)."""

    @click.command("flash")
    @click.argument("port")
    @click.option(
        "--app",
        "app_dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Directory to deploy (default: the bundled mlsysops firmware).",
    )
    @click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Device config (config.json: identity, credentials), validated, written last.",
    )
    @click.option(
        "--version", "version", default=None, help="Release version (default: the app's FW_VERSION)."
    )
    @click.option("--baud", type=click.IntRange(1200), default=115200, show_default=True)
    @click.option("--source", is_flag=True, help="Deploy .py sources, do not compile with mpy-cross.")
    @click.option(
        "--no-raw-paste", is_flag=True, help="Use the plain raw REPL even if the board has raw-paste."
    )
    @click.option("--no-boot", is_flag=True, help="Leave the board in its REPL (no reboot, no birth wait).")
    @output_option
    @mapped
    def command(
        port: str,
        app_dir: Path | None,
        config_path: Path | None,
        version: str | None,
        baud: int,
        source: bool,
        no_raw_paste: bool,
        no_boot: bool,
        output_format: str,
    ) -> None:
        """Deploy to the board on PORT: compile for its .mpy version, write changed files
        (verified by SHA-256, renamed into place), delete what the release dropped, write the
        config last, reboot and wait for the birth with the new version."""
        app = app_dir or firmware_dir()
        config = load_config(config_path, app) if config_path is not None else None
        options = FlashOptions(
            app, config=config, version=version, compiled=not source, paste=not no_raw_paste, boot=not no_boot
        )
        channel = PyserialPort(port, baud)
        channel.open()
        progress = TerminalProgress()
        try:
            report: FlashReport = flash(channel, options, progress)
        finally:
            progress.close()
            channel.close()
        emit(report.as_dict(), output_format, _report_table)

    return command
