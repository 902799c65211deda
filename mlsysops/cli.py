"""Root of the `mlsysops` command line.

Each package contributes its command group through the `mlsysops.cli` entry-point group, so
the root knows no subsystem. Groups load lazily: `mlsysops node ...` does not import the
controller, and a broken plugin only breaks its own group. A group whose role's extra is not
installed (see mlsysops.roles) is left out of the listing, and the help says how to get it.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

import click

from mlsysops.install import install
from mlsysops.roles import install_hint, missing, role_of_group

ENTRY_POINT_GROUP = "mlsysops.cli"


def _missing_extra(group: str) -> tuple[str, list[str]] | None:
    """(extra, what is missing) when `group` needs an extra this machine lacks."""
    role = role_of_group(group)
    if role is None:
        return None
    absent = missing(role.extra)
    return (role.extra, absent) if absent else None


class PluginGroup(click.Group):
    def _entry_points(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        plugins = [name for name in self._entry_points() if _missing_extra(name) is None]
        return sorted({*self.commands, *plugins})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:  # the root's own commands (install), before any plugin
            return self.commands[cmd_name]
        ep = self._entry_points().get(cmd_name)
        if ep is None:
            return None
        lacking = _missing_extra(cmd_name)
        if lacking is not None:
            extra, absent = lacking
            return _unavailable(
                cmd_name, f"needs the '{extra}' extra (missing: {', '.join(absent)}): {install_hint(extra)}"
            )
        try:
            command = ep.load()
        except ImportError as exc:  # a half-installed plugin: say which, keep the rest usable
            return _unavailable(cmd_name, str(exc))
        if not isinstance(command, click.Command):
            return _unavailable(cmd_name, f"entry point {ep.value} is not a click command")
        return command

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        by_extra: dict[str, list[str]] = {}
        for name in sorted(self._entry_points()):
            lacking = _missing_extra(name)
            if lacking is not None:
                by_extra.setdefault(lacking[0], []).append(name)
        if by_extra:
            with formatter.section("Not installed"):
                formatter.write_dl(
                    [(", ".join(groups), install_hint(extra)) for extra, groups in sorted(by_extra.items())]
                )


def _unavailable(name: str, reason: str) -> click.Command:
    def fail() -> None:
        raise click.ClickException(f"command group {name!r} is unavailable: {reason}")

    return click.Command(
        name,
        callback=fail,
        help=f"(unavailable: {reason})",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},  # `apps plan …` too
    )


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mlsysops")
def main() -> None:
    """Manage the computing continuum: nodes, far-edge devices and applications."""


main.add_command(install)
