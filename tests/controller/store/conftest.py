"""Fixtures of the embedded object store's tests: a fresh store file per test, closed after."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from controller import store
from controller.store import SqliteStore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "controller.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[SqliteStore]:
    opened = store.open(db_path, poll_interval=0.02, bookmark_interval=0.2)
    yield opened
    opened.close()
