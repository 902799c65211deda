"""`python -m mlconnector.experiment record --out PATH [--quick]`: regenerate the QoS dataset on
this machine (root: containerd, cgroups, a network namespace)."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import click

from mlconnector.experiment.grid import QUICK, Grid, record_grid
from mlconnector.experiment.testbed import Testbed


@click.group()
def main() -> None:
    """The real workload behind the ML connector's QoS dataset."""


@main.command()
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="CSV to write.")
@click.option("--quick", is_flag=True, help="A tiny grid (2 quotas x 2 runtimes x 1 load).")
@click.option("--runtimes", default="runc,runsc", show_default=True, help="Comma-separated handlers.")
@click.option("--window", "window_s", type=float, default=None, help="Seconds per window.")
@click.option("--shuffle", "seed", type=int, default=None, help="Record the points in a random order (seed).")
@click.option("--append", is_flag=True, help="Append to the rows already in --out.")
def record(
    out: Path, quick: bool, runtimes: str, window_s: float | None, seed: int | None, append: bool
) -> None:
    """Measure the grid and write one row per window."""
    grid = QUICK if quick else Grid()
    grid = dataclasses.replace(grid, runtimes=tuple(r for r in runtimes.split(",") if r), shuffle_seed=seed)
    if window_s:
        grid = dataclasses.replace(grid, window_s=window_s)
    workdir = Path(tempfile.mkdtemp(prefix="mlsysops-exp-"))
    try:
        with click.progressbar(length=len(grid), label="recording windows") as bar:
            rows = record_grid(lambda: Testbed(workdir), grid, out, bar.update, append_to_existing=append)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    click.echo(f"{len(rows)} rows -> {out}")


if __name__ == "__main__":
    main()
