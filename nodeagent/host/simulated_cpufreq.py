"""cpufreq's store methods, as the simulated kernel applies them (drivers/cpufreq/cpufreq.c).

  * scaling_governor: a name from scaling_available_governors, else EINVAL.
  * scaling_min_freq / scaling_max_freq: a decimal outside [cpuinfo_min_freq, cpuinfo_max_freq],
    or one that would make min > max, fails with EINVAL. That is the pre-5.3 kernel for min > max
    (cpufreq_set_policy refused it) and stricter than any kernel for the bounds (they clamp);
    newer kernels store both as freq-QoS requests and clamp silently, so a value read back may
    differ from the one written. Refusing makes every ordering or range mistake visible here
    instead of turning into drift on hardware. An in-range value is resolved to the driver's
    table like __resolve_freq(): min up to the next offered frequency, max down.
  * scaling_setspeed only works under the userspace governor.
  * read-only attributes (cpuinfo_*, scaling_available_*, scaling_cur_freq, affected_cpus ...)
    fail with EACCES, as kernfs does for files without a store method even for root.
"""

from __future__ import annotations

import errno
from pathlib import Path

from nodeagent.host.simulated_kernfs import KernelRefusal, read_file, words, write_file


def store(target: Path, value: str) -> None:
    """Write `value` to the policy attribute `target` as the kernel would, or KernelRefusal."""
    policy, attr = target.parent, target.name
    if attr == "scaling_governor":
        if value not in words(policy / "scaling_available_governors"):
            raise KernelRefusal(errno.EINVAL)
        write_file(target, value)
    elif attr in ("scaling_min_freq", "scaling_max_freq"):
        write_file(target, str(_resolve_limit(policy, attr, value)))
    elif attr == "scaling_setspeed":
        if read_file(policy / "scaling_governor") != "userspace" or not value.isdigit():
            raise KernelRefusal(errno.EINVAL)
        low, high = int(read_file(policy / "scaling_min_freq")), int(read_file(policy / "scaling_max_freq"))
        write_file(policy / "scaling_cur_freq", str(min(max(int(value), low), high)))
        return
    else:
        raise KernelRefusal(errno.EACCES)
    _settle_frequency(policy)


def _resolve_limit(policy: Path, attr: str, value: str) -> int:
    if not value.isdigit():
        raise KernelRefusal(errno.EINVAL)
    wanted = int(value)
    low, high = int(read_file(policy / "cpuinfo_min_freq")), int(read_file(policy / "cpuinfo_max_freq"))
    if not low <= wanted <= high:
        raise KernelRefusal(errno.EINVAL)
    table = sorted(int(f) for f in words(policy / "scaling_available_frequencies"))
    if table:  # __resolve_freq(): min rounds up to an offered frequency, max rounds down
        if attr == "scaling_min_freq":
            wanted = next(f for f in table if f >= wanted)
        else:
            wanted = max(f for f in table if f <= wanted)
    other = "scaling_max_freq" if attr == "scaling_min_freq" else "scaling_min_freq"
    current_other = int(read_file(policy / other))
    new_min, new_max = (wanted, current_other) if attr == "scaling_min_freq" else (current_other, wanted)
    if new_min > new_max:
        raise KernelRefusal(errno.EINVAL)
    return wanted


def _settle_frequency(policy: Path) -> None:
    """scaling_cur_freq follows the governor within [min, max] as the kernel reports it."""
    low, high = int(read_file(policy / "scaling_min_freq")), int(read_file(policy / "scaling_max_freq"))
    governor = read_file(policy / "scaling_governor")
    current = int(read_file(policy / "scaling_cur_freq"))
    if governor == "performance":
        current = high
    elif governor == "powersave":
        current = low
    else:
        current = min(max(current, low), high)
    write_file(policy / "scaling_cur_freq", str(current))
    if governor != "userspace":
        write_file(policy / "scaling_setspeed", "<unsupported>")
