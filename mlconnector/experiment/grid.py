"""The dataset recorder: every point of a grid of settings and offered loads, measured on a
Testbed, one CSV row (contracts.DATASET_COLUMNS) per window."""

from __future__ import annotations

import csv
import itertools
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mlconnector.contracts import DATASET_COLUMNS


class Bed(Protocol):
    def set_runtime(self, handler: str) -> None: ...
    def set_quota(self, cores: float) -> None: ...
    def set_cpus(self, n: int) -> None: ...
    def measure(self, offered_rps: float, seconds: float) -> dict[str, float | int | str]: ...


@dataclass(frozen=True)
class Grid:
    runtimes: Sequence[str] = ("runc", "runsc")
    cpus: Sequence[int] = (1, 2)
    quotas: Sequence[float] = (0.2, 0.4, 0.6, 0.8, 1.2, 1.6)
    loads_rps: Sequence[float] = (10, 25, 50, 80)
    window_s: float = 4.0
    settle_s: float = 0.5  # between windows: the previous window's stragglers finish
    shuffle_seed: int | None = None  # None: grid order; else a seeded random order of the points
    repeats: int = 1  # windows per point: p95 over a few seconds varies, a model should see how much

    def points(self) -> Iterator[tuple[str, int, float, float]]:
        """(runtime, cpus, quota, load) in recording order, every point `repeats` times. Grid order
        switches the runtime (the slow knob) once per repeat; a shuffled order mixes every setting
        over time, so a time-ordered hold-out (the most recent windows) covers the whole grid
        rather than its last block."""
        points = list(itertools.product(self.runtimes, self.cpus, self.quotas, self.loads_rps)) * self.repeats
        if self.shuffle_seed is not None:
            random.Random(self.shuffle_seed).shuffle(points)
        return iter(points)

    def __len__(self) -> int:
        return len(self.runtimes) * len(self.cpus) * len(self.quotas) * len(self.loads_rps) * self.repeats


QUICK = Grid(runtimes=("runc", "runsc"), cpus=(1,), quotas=(0.2, 1.0), loads_rps=(20,), window_s=3.0)


def record_grid(
    testbed_factory: Callable[[], AbstractContextManager[Bed]],
    grid: Grid,
    out_csv: Path,
    progress: Callable[[int], None] = lambda _n: None,
    *,
    append_to_existing: bool = False,
) -> list[dict[str, float | int | str]]:
    """Measure every point of `grid` on a fresh testbed and write the rows to `out_csv` (written
    as it goes, so an interrupted recording keeps what it measured; appended after the rows
    already there with `append_to_existing`). `progress(1)` after each window."""
    rows: list[dict[str, float | int | str]] = []
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    append = out_csv.exists() and out_csv.stat().st_size > 0 and append_to_existing
    mode = "a" if append else "w"
    with testbed_factory() as bed, out_csv.open(mode, newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(DATASET_COLUMNS))
        if not append:
            writer.writeheader()
        for runtime, cpus, quota, load in grid.points():
            bed.set_runtime(runtime)
            bed.set_cpus(cpus)
            bed.set_quota(quota)
            time.sleep(grid.settle_s)
            row = bed.measure(load, grid.window_s)
            writer.writerow(row)
            handle.flush()
            rows.append(row)
            progress(1)
    return rows
