"""A QoS grid shaped like the recorded dataset, for the model server's tests (what is served is
checked against the registry's own model, so the numbers only need to be learnable)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from mlconnector.contracts import DATASET_COLUMNS


def write_grid(path: Path, rows: int = 96, seed: int = 0, slow: float = 1.0) -> Path:
    """A grid of windows shaped like the recorded one (contracts.DATASET_COLUMNS): latency grows as
    offered load approaches the quota's capacity (an M/M/c-like curve), with noise; `slow` scales
    the service's work per request (a different regime for a second training run)."""
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, DATASET_COLUMNS)
        w.writeheader()
        for i in range(rows):
            quota = [0.5, 1.0, 1.5, 2.0][i % 4]
            cpus = [1, 2][(i // 4) % 2]
            gvisor = (i // 8) % 2
            work = 5.0 * slow
            capacity = 1000.0 * min(quota, cpus) / work / (1.15 if gvisor else 1.0)
            rps = capacity * [0.2, 0.4, 0.6, 0.8][(i // 16) % 4]
            rho = rps / capacity
            lat = work * (1 + 0.1 * gvisor) * (1 + 3 * rho / (1 - rho)) * math.exp(rng.normal(0, 0.05))
            w.writerow(
                {
                    "window_start": 1_700_000_000 + 30 * i,
                    "window_s": 30,
                    "runtime": "runsc" if gvisor else "runc",
                    "cpu_quota_cores": quota,
                    "cpus": cpus,
                    "runtime_gvisor": gvisor,
                    "offered_rps": round(rps, 2),
                    "work_ms": work,
                    "requests": int(rps * 30),
                    "errors": 0,
                    "throughput_rps": round(rps, 2),
                    "latency_p50_ms": round(lat * 0.6, 3),
                    "latency_p95_ms": round(lat, 3),
                    "latency_p99_ms": round(lat * 1.4, 3),
                    "cpu_usage_cores": round(rho * min(quota, cpus), 3),
                    "throttled_fraction": round(max(0.0, rho - 0.5), 3),
                }
            )
    return path
