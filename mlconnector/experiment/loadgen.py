"""The request generator: an open-loop HTTP/1.0 client on the host (asyncio, one connection per
request, as busybox httpd serves them) offering a fixed schedule and timing every answer.

Latency runs from the scheduled send time to the last byte of the answer, so time a request
waited because the client was late counts too. A request that does not get a 200 within
`timeout_s` is an error; the window ends when every request sent has finished or timed out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from mlconnector.experiment.schedule import arrivals
from mlconnector.experiment.stats import LoadResult


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str = "/cgi-bin/work"


async def _one(target: Target, due: float, timeout_s: float) -> float | None:
    """Seconds from `due` (a time.perf_counter value) to the complete answer, None on failure."""
    delay = due - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(target.host, target.port)
            try:
                writer.write(f"GET {target.path} HTTP/1.0\r\nHost: {target.host}\r\n\r\n".encode())
                await writer.drain()
                answer = await reader.read()
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return None
    if not answer.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")):
        return None
    return time.perf_counter() - due


async def _offer(target: Target, offsets: Sequence[float], timeout_s: float) -> list[float | None]:
    start = time.perf_counter() + 0.01
    tasks = [asyncio.create_task(_one(target, start + off, timeout_s)) for off in offsets]
    return list(await asyncio.gather(*tasks))


def offer(
    target: Target, rate_rps: float, seconds: float, *, timeout_s: float = 2.0, seed: int = 0
) -> LoadResult:
    """Offer `rate_rps` (Poisson) for `seconds` and wait for the answers (at most timeout_s more)."""
    offsets = arrivals(rate_rps, seconds, seed=seed)
    results = asyncio.run(_offer(target, offsets, timeout_s))
    good = tuple(r for r in results if r is not None)
    return LoadResult(rate_rps, seconds, good, len(results) - len(good), timeout_s)
