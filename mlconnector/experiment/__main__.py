"""`python -m mlconnector.experiment record --out PATH [--quick]`: regenerate the QoS dataset on
this machine (root: containerd, cgroups, a network namespace)."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import TypeVar

import click

from mlconnector.experiment.grid import QUICK, Grid, record_grid
from mlconnector.experiment.testbed import Testbed

T = TypeVar("T", int, float)


@click.group()
def main() -> None:
    """The real workload behind the ML connector's QoS dataset."""


@main.command()
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="CSV to write.")
@click.option("--quick", is_flag=True, help="A tiny grid (2 quotas x 2 runtimes x 1 load).")
@click.option("--runtimes", default="runc,runsc", show_default=True, help="Comma-separated handlers.")
@click.option("--window", "window_s", type=float, default=None, help="Seconds per window.")
@click.option("--shuffle", "seed", type=int, default=None, help="Record the points in a random order (seed).")
@click.option("--quotas", default=None, help="Comma-separated CPU quotas (cores); default: the grid's.")
@click.option("--cpus", default=None, help="Comma-separated cpuset sizes; default: the grid's.")
@click.option("--loads", default=None, help="Comma-separated offered loads (req/s); default: the grid's.")
@click.option(
    "--repeats", type=click.IntRange(min=1), default=1, show_default=True, help="Windows per point."
)
@click.option("--append", is_flag=True, help="Append to the rows already in --out.")
def record(
    out: Path,
    quick: bool,
    runtimes: str,
    window_s: float | None,
    seed: int | None,
    quotas: str | None,
    cpus: str | None,
    loads: str | None,
    repeats: int,
    append: bool,
) -> None:
    """Measure the grid and write one row per window."""
    grid = QUICK if quick else Grid()
    grid = dataclasses.replace(
        grid, runtimes=tuple(r for r in runtimes.split(",") if r), shuffle_seed=seed, repeats=repeats
    )
    if quotas:
        grid = dataclasses.replace(grid, quotas=_positive(quotas, float, "--quotas"))
    if cpus:
        grid = dataclasses.replace(grid, cpus=_positive(cpus, int, "--cpus"))
    if loads:
        grid = dataclasses.replace(grid, loads_rps=_positive(loads, float, "--loads"))
    if window_s:
        grid = dataclasses.replace(grid, window_s=window_s)
    workdir = Path(tempfile.mkdtemp(prefix="mlsysops-exp-"))
    try:
        with click.progressbar(length=len(grid), label="recording windows") as bar:
            rows = record_grid(lambda: Testbed(workdir), grid, out, bar.update, append_to_existing=append)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    click.echo(f"{len(rows)} rows -> {out}")


def _positive(text: str, kind: type[T], option: str) -> tuple[T, ...]:
    """"0.2,0.4" -> (0.2, 0.4): positive numbers of `kind`, else a usage error naming `option`."""
    try:
        values = tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: {exc}", param_hint=option) from None
    if not values or min(values) <= 0:
        raise click.BadParameter(f"{text!r}: expected positive numbers", param_hint=option)
    return values


if __name__ == "__main__":
    main()
