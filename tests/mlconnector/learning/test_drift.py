"""Drift per feature on the recorded grid: two random halves of the same conditions are not drift,
a window with the offered load shifted is, and the verdict names the feature that moved."""

from __future__ import annotations

import numpy as np
import pytest

from mlconnector.contracts import QOS_FEATURES
from mlconnector.drift import detect, psi
from mlconnector.features import Dataset

NAMES = [f.name for f in QOS_FEATURES]


def halves(ds: Dataset, seed: int) -> tuple[Dataset, Dataset]:
    order = np.random.default_rng(seed).permutation(len(ds))
    return ds.take(order[: len(ds) // 2]), ds.take(order[len(ds) // 2 :])


def test_psi_is_zero_for_the_same_sample_and_large_for_a_moved_one() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(100, 10, 2000)
    assert psi(a, a) == pytest.approx(0.0, abs=1e-12)
    assert psi(a, rng.normal(100, 10, 2000)) < 0.05
    assert psi(a, a + 10) > 0.5  # one standard deviation


def test_psi_bins_a_discrete_setting_by_value_and_sees_a_new_value() -> None:
    cpus = np.array([1.0, 2.0] * 50)
    assert psi(cpus, cpus[::-1]) == pytest.approx(0.0, abs=1e-12)
    # half the windows now on 4 CPUs, a value the reference never had: the "other" bin
    assert psi(cpus, np.array([1.0, 4.0] * 50)) > 1.0


def test_two_random_halves_of_the_same_conditions_do_not_drift(recorded: Dataset) -> None:
    for seed in range(5):
        reference, current = halves(recorded, seed)
        report = detect(reference, current, QOS_FEATURES)
        assert not report.drifted, (seed, report.summary())
        assert set(report.features) == set(NAMES)
        assert report.reference_rows + report.current_rows == len(recorded)
        # PSI alone may pass 0.2 on halves of a few dozen windows (sampling noise); KS does not confirm it
        assert all(not d.drifted for d in report.features.values())


def test_a_window_at_higher_offered_load_drifts_on_offered_rps(recorded: Dataset) -> None:
    reference, rest = halves(recorded, 0)
    rps = rest.column("offered_rps")
    busy = rest.where(rps > np.median(rps))  # real windows, all at the upper half of the load
    report = detect(reference, busy, NAMES)
    assert report.drifted
    drift = report.features["offered_rps"]
    assert drift.drifted and drift.ks_pvalue < 0.01 and drift.psi > 0.2
    assert "offered_rps" in report.drifted_features and "offered_rps (KS p=" in report.summary()
    assert report.to_json()["features"]["offered_rps"]["drifted"] is True


def test_the_same_conditions_at_twice_the_load_drift(recorded: Dataset) -> None:
    reference, current = halves(recorded, 1)
    shifted = Dataset({**current.columns, "offered_rps": current.column("offered_rps") * 2.0}, current.source)
    report = detect(reference, shifted, NAMES)
    assert report.drifted_features == ("offered_rps",)
    assert detect(reference, current, NAMES).drifted is False


def test_detect_refuses_what_it_cannot_compare(recorded: Dataset) -> None:
    with pytest.raises(ValueError, match="no features"):
        detect(recorded, recorded, [])
    with pytest.raises(ValueError, match="at least 2 windows"):
        detect(recorded, recorded.take([0]), NAMES)
