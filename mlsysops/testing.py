"""Helpers shared by tests, benchmarks and demos across the packages.

`wait_for` polls with a deadline: waiting on a condition instead of sleeping a fixed time keeps
suites fast on a quiet machine and correct on a loaded one, with one failure message everywhere.
`files_below` makes "nothing was written" checkable: compare it before and after.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
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


def files_below(root: Path) -> dict[str, str]:
    """Every regular file below root (symlinks aside), by relative path, with its content."""
    found: dict[str, str] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            if not path.is_symlink():
                found[str(path.relative_to(root))] = path.read_text(errors="replace")
    return found
