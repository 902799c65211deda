"""A logger that says a thing once per key per interval.

A device spraying garbage must not flood the journal, yet the first occurrence must be visible:
the first message for a key is logged, the next ones within the interval are only counted, and
the count is appended to the next message that gets through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

MAX_KEYS = 4096


class RateLimitedLog:
    def __init__(
        self, logger: logging.Logger, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._interval = interval_s
        self._clock = clock
        self._last: dict[str, tuple[float, int]] = {}  # key -> (time logged, suppressed since)

    def warning(self, key: str, msg: str, *args: object) -> bool:
        """Log unless `key` was logged within the interval; True when it was logged."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self._interval:
            self._last[key] = (last[0], last[1] + 1)
            return False
        if len(self._last) >= MAX_KEYS:
            self._forget_older_than(now - self._interval)
        suppressed = last[1] if last else 0
        suffix = f" ({suppressed} similar suppressed)" if suppressed else ""
        self._logger.warning(msg + suffix, *args)
        self._last[key] = (now, 0)
        return True

    def _forget_older_than(self, cutoff: float) -> None:
        self._last = {k: v for k, v in self._last.items() if v[0] >= cutoff}
        if len(self._last) >= MAX_KEYS:  # all recent: keep memory bounded anyway
            self._last.clear()
