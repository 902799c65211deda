"""Datasets: the recorded CSV validated with errors that name the fault, feature matrices in a
signature's order, the hold-out as the most recent windows, a digest of exactly the rows used, and
rows of named windows built from Prometheus-style range-query series."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from mlconnector.contracts import DATASET_COLUMNS, QOS_FEATURES
from mlconnector.features import (
    DATASET_PATH,
    Dataset,
    DatasetError,
    SeriesColumn,
    load_dataset,
    window_seconds,
    windows_from_series,
)

NAMES = tuple(f.name for f in QOS_FEATURES)


def write_csv(path: Path, rows: list[Mapping[str, object]], columns: Sequence[str] = DATASET_COLUMNS) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def row(start: float, quota: object, rps: object, **extra: object) -> dict[str, object]:
    base: dict[str, object] = {c: 0 for c in DATASET_COLUMNS}
    base.update(
        window_start=start,
        window_s=10,
        runtime="runc",
        cpu_quota_cores=quota,
        cpus=2,
        offered_rps=rps,
        latency_p95_ms=12.5,
    )
    base.update(extra)
    return base


def test_the_packaged_dataset_loads_in_time_order(recorded: Dataset) -> None:
    assert DATASET_PATH.name == "qos_grid.csv" and DATASET_PATH.exists()
    assert set(DATASET_COLUMNS) <= set(recorded.names)
    assert len(recorded) >= 48
    assert np.all(np.diff(recorded.column("window_start")) >= 0)
    assert set(recorded.column("runtime")) <= {"runc", "runsc"}
    assert recorded.source == "dataset:mlconnector/data/qos_grid.csv"


def test_rows_are_sorted_by_window_start_and_matrix_follows_the_given_order(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [row(30, 1.0, 50), row(10, 0.5, 20), row(20, 2.0, 80)])
    ds = load_dataset(path)
    assert list(ds.column("window_start")) == [10, 20, 30]
    m = ds.matrix(["offered_rps", "cpu_quota_cores"])
    assert m.tolist() == [[20, 0.5], [80, 2.0], [50, 1.0]]
    assert ds.window_start == 10 and ds.window_end == 40  # last start + window_s
    assert ds.rows(["cpus"]) == [{"cpus": 2.0}] * 3


def test_a_missing_column_is_named(tmp_path: Path) -> None:
    columns = [c for c in DATASET_COLUMNS if c != "offered_rps"]
    path = write_csv(tmp_path / "d.csv", [row(1, 1.0, 10)], columns)
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['offered_rps'\]"):
        load_dataset(path)


def test_a_non_numeric_value_is_named_with_its_row(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [row(1, 1.0, 10), row(2, "lots", 10)])
    with pytest.raises(DatasetError, match=r"column 'cpu_quota_cores', row 1: 'lots' is not a number"):
        load_dataset(path)
    path = write_csv(tmp_path / "e.csv", [row(1, 1.0, "nan")])
    with pytest.raises(DatasetError, match="not a finite number"):
        load_dataset(path)


def test_an_empty_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no rows"):
        load_dataset(write_csv(tmp_path / "header-only.csv", []))
    (tmp_path / "nothing.csv").write_text("")
    with pytest.raises(DatasetError, match="empty file"):
        load_dataset(tmp_path / "nothing.csv")
    with pytest.raises(DatasetError, match="no such dataset"):
        load_dataset(tmp_path / "absent.csv")


def test_matrix_of_an_absent_or_text_column_says_so(recorded: Dataset) -> None:
    with pytest.raises(DatasetError, match=r"lacks feature column\(s\) \['frequency_mhz'\]"):
        recorded.matrix(["cpus", "frequency_mhz"])
    with pytest.raises(DatasetError, match="hold text"):
        recorded.matrix(["runtime"])


def test_split_recent_holds_out_the_latest_windows_not_a_random_sample(recorded: Dataset) -> None:
    older, recent = recorded.split_recent(0.25)
    assert len(older) + len(recent) == len(recorded)
    assert len(recent) == pytest.approx(0.25 * len(recorded), abs=1)
    assert older.column("window_start").max() <= recent.column("window_start").min()
    assert older.digest() != recent.digest()
    with pytest.raises(DatasetError, match="not in"):
        recorded.split_recent(1.0)


def test_digest_names_exactly_the_rows(recorded: Dataset, tmp_path: Path) -> None:
    again = load_dataset(DATASET_PATH)
    assert recorded.digest() == again.digest()
    assert len(recorded.digest()) == 64
    assert recorded.take(range(1, len(recorded))).digest() != recorded.digest()
    lineage = recorded.lineage(parent_version="3")
    assert lineage.rows == len(recorded) and lineage.digest == recorded.digest()
    assert lineage.window_start == recorded.window_start and lineage.parent_version == "3"
    assert recorded.between(lineage.window_start, lineage.window_end).digest() == recorded.digest()


# --- telemetry -------------------------------------------------------------------------------------


class FakePrometheus:
    """Answers range queries from hand-built series, recording what was asked."""

    def __init__(self, series: Mapping[str, list[tuple[dict[str, str], list[tuple[float, float]]]]]) -> None:
        self.series = series
        self.asked: list[tuple[str, float, float, float]] = []

    def query_range(
        self, promql: str, start: float, end: float, step: float
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        self.asked.append((promql, start, end, step))
        return [(labels, [(t, v) for t, v in s if start <= t <= end]) for labels, s in self.series[promql]]


def test_window_seconds_reads_signature_windows() -> None:
    assert window_seconds("30s") == 30 and window_seconds("5m") == 300 and window_seconds("1h") == 3600
    assert window_seconds("500ms") == 0.5
    with pytest.raises(DatasetError, match="not a duration"):
        window_seconds("soon")


def test_series_are_averaged_per_window_and_combined_across_series() -> None:
    rate = "sum(rate(requests_total[30s]))"
    p95 = "histogram_quantile(0.95, ...)"
    prom = FakePrometheus(
        {
            # two instances: their rates add up; samples every 10 s
            rate: [
                ({"instance": "a"}, [(100 + 10 * k, 10.0 + k) for k in range(9)]),
                ({"instance": "b"}, [(100 + 10 * k, 5.0) for k in range(9)]),
            ],
            # one series, no sample in the third window [160, 190)
            p95: [({}, [(100, 20.0), (110, 22.0), (120, 24.0), (130, 40.0), (140, 50.0), (150, 60.0)])],
        }
    )
    ds = windows_from_series(
        prom,
        [SeriesColumn("offered_rps", rate), SeriesColumn("latency_p95_ms", p95, combine="max")],
        start=100,
        end=190,
        window="30s",
        step=10,
        constants={"runtime": "runc", "cpus": 2},
    )
    assert [q[0] for q in prom.asked] == [rate, p95] and prom.asked[0][1:] == (100, 190, 10)
    assert list(ds.column("window_start")) == [100, 130]  # the third window lacks latency: left out
    assert list(ds.column("window_s")) == [30, 30]
    # window [100,130): a = 10, 11, 12 -> 11, b = 5 -> 16; [130,160): a = 13, 14, 15 -> 14, +5
    assert list(ds.column("offered_rps")) == [16.0, 19.0]
    assert list(ds.column("latency_p95_ms")) == [22.0, 50.0]
    assert list(ds.column("runtime")) == ["runc", "runc"] and list(ds.column("cpus")) == [2.0, 2.0]
    assert ds.source == "prometheus"


def test_no_whole_window_is_an_error() -> None:
    prom = FakePrometheus({"up": [({}, [])]})
    with pytest.raises(DatasetError, match="no window"):
        windows_from_series(prom, [SeriesColumn("x", "up")], 0, 60, "30s")
    with pytest.raises(DatasetError, match="no whole window"):
        windows_from_series(prom, [SeriesColumn("x", "up")], 0, 20, "30s")
