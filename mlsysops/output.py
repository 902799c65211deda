"""Rendering of CLI results: readable tables by default, `-o json|yaml` for machines.

Every command group renders through here so the formats stay the same everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import click
import yaml

FORMATS = ("table", "json", "yaml")

output_option = click.option(
    "-o",
    "--output",
    "output_format",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format.",
)


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> str:
    """Plain aligned columns, like kubectl: no borders, so output stays greppable."""
    cells = [[str(h).upper() for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def emit(data: Any, output_format: str, render_table: Any = None) -> None:
    """Print data as JSON/YAML, or through render_table(data) -> str for the table format."""
    if output_format == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    elif output_format == "yaml":
        click.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip())
    elif render_table is not None:
        click.echo(render_table(data))
    elif isinstance(data, Mapping):
        click.echo(table(sorted(data.items()), ["key", "value"]))
    else:
        click.echo(str(data))
