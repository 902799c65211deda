"""Progress of a deploy on the terminal: one bar for the whole deploy, one for the current file.

click's progressbar draws the total; its item text is the current file with a bar of its own,
so both stay on one line (on stderr: `-o json` output on stdout stays parseable).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from faredge.deploy.plan import Plan
from faredge.deploy.release import FileEntry

FILE_BAR = 12


def _bar(done: int, total: int, width: int = FILE_BAR) -> str:
    filled = width if total <= 0 else width * done // total
    return "#" * filled + "-" * (width - filled)


class TerminalProgress:
    def __init__(self) -> None:
        self._bar: Any = None
        self._done: dict[str, int] = {}

    def planned(self, plan: Plan) -> None:
        click.echo(
            f"{len(plan.write)} to write ({plan.bytes_to_write} bytes), {len(plan.skip)} unchanged, "
            f"{len(plan.delete)} to delete",
            err=True,
        )
        if plan.write:
            self._bar = click.progressbar(
                length=plan.bytes_to_write,
                label="deploy",
                file=sys.stderr,
                item_show_func=lambda item: item,
                show_percent=True,
            )
            self._bar.__enter__()

    def file(self, entry: FileEntry, written: int) -> None:
        if self._bar is None:
            return
        step = written - self._done.get(entry.name, 0)
        self._done[entry.name] = written
        label = f"{entry.name} [{_bar(written, entry.size)}] {written}/{entry.size}"
        self._bar.update(step, current_item=label)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
