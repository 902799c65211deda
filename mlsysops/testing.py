"""Polling with a deadline, shared by tests, benchmarks and demos across the packages.

Waiting on a condition instead of sleeping a fixed time keeps suites fast on a quiet machine and
correct on a loaded one; one helper keeps the failure message the same everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition", interval: float = 0.01
) -> Any:
    """Poll predicate() until it is truthy and return that value; AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
