"""Root of the `mlsysops` command line.

Each package contributes its command group through the `mlsysops.cli` entry-point group, so
the root knows no subsystem. Groups load lazily: `mlsysops node ...` does not import the
controller, and a broken plugin only breaks its own group.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import click

ENTRY_POINT_GROUP = "mlsysops.cli"


class PluginGroup(click.Group):
    def _entry_points(self) -> dict[str, object]:
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._entry_points())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        ep = self._entry_points().get(cmd_name)
        if ep is None:
            return None
        try:
            return ep.load()  # type: ignore[attr-defined, no-any-return]
        except ImportError as exc:  # a half-installed plugin: say which, keep the rest usable
            return _unavailable(cmd_name, exc)


def _unavailable(name: str, exc: Exception) -> click.Command:
    def fail() -> None:
        raise click.ClickException(f"command group {name!r} is unavailable: {exc}")

    return click.Command(name, callback=fail, help=f"(unavailable: {exc})")


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mlsysops")
def main() -> None:
    """Manage the computing continuum: nodes, far-edge devices and applications."""
