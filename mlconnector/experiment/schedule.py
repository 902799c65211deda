"""When the open-loop generator sends: arrival offsets for a window at a fixed offered rate.

Open loop means the send times do not depend on answers (no coordinated omission): a slow
service sees the same offered load as a fast one, and queueing shows up as latency, measured
from the scheduled send time.
"""

from __future__ import annotations

import random


def arrivals(rate_rps: float, seconds: float, *, poisson: bool = True, seed: int = 0) -> list[float]:
    """Offsets (seconds from the window's start, ascending, all < seconds) of the requests to send.

    Poisson arrivals (exponential gaps, seeded so a window is reproducible) or, with
    poisson=False, a constant rate with the first request at 0.
    """
    if rate_rps <= 0 or seconds <= 0:
        raise ValueError(f"rate {rate_rps} req/s over {seconds} s")
    if not poisson:
        count = int(rate_rps * seconds - 1e-9) + 1
        return [i / rate_rps for i in range(count) if i / rate_rps < seconds]
    rng = random.Random(seed)
    out: list[float] = []
    t = rng.expovariate(rate_rps)
    while t < seconds:
        out.append(t)
        t += rng.expovariate(rate_rps)
    return out
