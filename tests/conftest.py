"""Session-wide test settings shared by every suite."""

from __future__ import annotations

import os

import pytest


def require_root() -> None:
    """Tests on real cgroupfs, netns and daemons need root; say so instead of failing obscurely."""
    if os.geteuid() != 0:
        pytest.skip("needs root (real cgroupfs / network namespaces)")
