"""Training windows from a Prometheus: the telemetry the framework itself collects.

`PrometheusWindows` is a `WindowSource`: which PromQL query fills which dataset column (the
features and the target of a model's signature), the length of one row's window, the query step
and the settings telemetry does not carry (`constants`, e.g. runtime_gvisor=0). `window(start,
end)` returns the rows of that span (`features.windows_from_series`), named for the Lineage as
`prometheus:URL`; a query that matches no series in the span is an `EmptyWindow` naming the
column and the query, never a silently shorter table. Every failure is a `SourceError`:
`SourceUnavailable` when no Prometheus answered, `EmptyWindow`, or an unusable answer.

The queries themselves go through a `SourceQuerier`. The ML connector imports no daemon and
speaks no HTTP: the controller passes `controller.telemetry.windows.PrometheusRangeSource`, over
its one Prometheus client, so there is one adapter of Prometheus' API in the framework.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mlconnector.features import (
    Dataset,
    DatasetError,
    Labels,
    RangeQuerier,
    Samples,
    SeriesColumn,
    windows_from_series,
)


class SourceError(Exception):
    """A telemetry source answered, but not with usable windows (bad query, malformed answer)."""


class SourceUnavailable(SourceError):
    """The telemetry source cannot be reached (refused, timed out, not a Prometheus)."""


class EmptyWindow(SourceError):
    """A query matched no series (or no whole window) in the span asked for."""


class WindowSource(Protocol):
    """Rows of measured windows for a span of time (unix seconds), from wherever telemetry lives."""

    @property
    def name(self) -> str:
        """Where the rows come from, as a Lineage names it (e.g. "prometheus:http://...:9090")."""
        ...

    def window(self, start: float, end: float) -> Dataset: ...


class SourceQuerier(RangeQuerier, Protocol):
    """A RangeQuerier on one Prometheus (`url`, for the Lineage), whose failures are
    SourceUnavailable (nothing answered) or SourceError (the answer was unusable); the
    controller's `controller.telemetry.windows.PrometheusRangeSource` is the one over HTTP."""

    @property
    def url(self) -> str: ...

    def close(self) -> None: ...


class _Checked:
    """A RangeQuerier that turns "no series" into EmptyWindow naming the column and the query."""

    def __init__(self, inner: Any, columns: Mapping[str, str]) -> None:
        self._inner = inner
        self._columns = columns

    def query_range(
        self, promql: str, start: float, end: float, step: float
    ) -> Sequence[tuple[Labels, Samples]]:
        found: Sequence[tuple[Labels, Samples]] = self._inner.query_range(promql, start, end, step)
        if not any(samples for _, samples in found):
            raise EmptyWindow(
                f"column {self._columns.get(promql, '?')}: query {promql!r} matched no samples between "
                f"{start:.0f} and {end:.0f}"
            )
        return found


@dataclass(frozen=True)
class PrometheusWindows:
    """A WindowSource over a Prometheus (see the module docstring). `queries`: column -> PromQL
    (or a SeriesColumn to choose how the series of one query combine: sum, max, mean)."""

    querier: SourceQuerier
    queries: Mapping[str, str | SeriesColumn]
    row_window: float = 30.0  # seconds of telemetry one row averages
    step: float = 5.0  # seconds between the samples a range query returns
    constants: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.queries:
            raise SourceError("no queries: give at least one COLUMN=PROMQL")
        if not (self.row_window > 0 and self.step > 0 and self.step <= self.row_window):
            raise SourceError(
                f"row window {self.row_window} s and step {self.step} s: need 0 < step <= window"
            )
        clash = sorted(set(self.queries) & set(self.constants))
        if clash:
            raise SourceError(f"column(s) {clash} given both as a query and as a constant")

    @property
    def name(self) -> str:
        return f"prometheus:{self.querier.url}"

    def close(self) -> None:
        """Closes the querier's connections (a source read once, e.g. per API request)."""
        self.querier.close()

    def columns(self) -> list[SeriesColumn]:
        return [q if isinstance(q, SeriesColumn) else SeriesColumn(c, q) for c, q in self.queries.items()]

    def window(self, start: float, end: float) -> Dataset:
        """The rows of [start, end): SourceUnavailable, SourceError or EmptyWindow otherwise."""
        if not (math.isfinite(start) and math.isfinite(end)) or end - start < self.row_window:
            raise EmptyWindow(
                f"span [{start}, {end}] is shorter than one row window of {self.row_window:g} s"
            )
        columns = self.columns()
        checked = _Checked(self.querier, {c.promql: c.column for c in columns})
        try:
            return windows_from_series(
                checked, columns, start, end, self.row_window, step=self.step,
                constants=self.constants, source=self.name,
            )  # fmt: skip
        except DatasetError as exc:
            raise EmptyWindow(f"{self.name}: {exc}") from None


def parse_assignments(pairs: Sequence[str], what: str) -> dict[str, str]:
    """["col=expr", ...] -> {col: expr} (the CLI's --query and --set); the first "=" splits."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise SourceError(f"{what} {pair!r}: expected COLUMN=VALUE")
        if key in out:
            raise SourceError(f"{what}: column {key!r} given twice")
        out[key] = value.strip()
    return out
