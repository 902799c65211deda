"""The CPU-bound service: busybox httpd with one CGI script that burns a fixed number of shell
loop iterations per request (the same CPU work under runc and gVisor; gVisor adds its own cost
of every fork, exec and syscall, which is what the runtime feature measures)."""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

PORT = 8080
#: Shell loop iterations per request: about 10 ms of one core here with runc.
ITERATIONS = 4000
BUSYBOX = "/bin/busybox"

CGI = """#!/bin/sh
i=0
while [ $i -lt {n} ]; do i=$((i+1)); done
printf 'Content-Type: text/plain\\r\\n\\r\\nok %s\\n' "$i"
"""


def write_site(root: Path, iterations: int = ITERATIONS) -> Path:
    """The httpd document root: /cgi-bin/work (executable)."""
    cgi = root / "cgi-bin" / "work"
    cgi.parent.mkdir(parents=True, exist_ok=True)
    cgi.write_text(CGI.format(n=iterations), encoding="ascii")
    cgi.chmod(0o755)
    return root


def args(port: int = PORT) -> list[str]:
    return ["/bin/busybox", "httpd", "-f", "-p", str(port), "-h", "/www"]


def work_ms(iterations: int = ITERATIONS, repeats: int = 5) -> float:
    """The CPU time (ms of one core, user + system) the CGI's loop takes on the host, unthrottled:
    the dataset's work_ms. Median of `repeats` runs."""
    script = f"i=0; while [ $i -lt {iterations} ]; do i=$((i+1)); done"
    times = []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([BUSYBOX, "sh", "-c", script], check=True, env={"PATH": os.defpath})
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    return sorted(times)[len(times) // 2]
