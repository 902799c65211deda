"""The recorded QoS grid (mlconnector/data/qos_grid.csv, measured on this machine by
mlconnector.experiment), loaded once: every claim about the models is made on it."""

from __future__ import annotations

import pytest

from mlconnector.features import DATASET_PATH, Dataset, load_dataset


@pytest.fixture(scope="session")
def recorded() -> Dataset:
    return load_dataset(DATASET_PATH)
