"""Checks of configuration values: each returns the reason a value is wrong, or None."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], str | None]  # returns the reason a value is wrong, or None


OCTAL = "an octal mode string like '0660'"
SIMULATE_MODES = ("off", "cpufreq", "all")


def octal_mode(value: str) -> str | None:
    return None if re.fullmatch(r"0?[0-7]{3}", value) else f"expected {OCTAL}"


def host_port(value: str) -> str | None:
    if value == "":
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return "expected HOST:PORT (e.g. '127.0.0.1:50051', '[::1]:50051'), or '' for none"
    return None


def absolute(value: str) -> str | None:
    return None if os.path.isabs(value) else "must be an absolute path"


def relative(value: str) -> str | None:
    return None if value and not os.path.isabs(value) else "must be a non-empty path relative to host.fs_root"


def one_of(*choices: str) -> Check:
    def check(value: str) -> str | None:
        return None if value in choices else f"expected one of {', '.join(choices)}"

    return check


def in_range(low: float, high: float) -> Check:
    def check(value: float) -> str | None:
        return None if low <= value <= high else f"must be between {low} and {high}"

    return check


def absolute_or_empty(value: str) -> str | None:
    return None if value == "" else absolute(value)


ROLES = ("read", "apply", "reset", "admin")
IDENTITY = re.compile(r"\*|(uid|gid):[0-9]+|(cn|san):[^\s]+", re.ASCII)


def policy(value: dict[str, str]) -> str | None:
    for identity, role in value.items():
        if not IDENTITY.fullmatch(identity):
            return f"{identity!r}: an identity is uid:N, gid:N, cn:NAME, san:NAME or '*'"
        if role not in ROLES:
            return f"{identity!r}: role {role!r} is not one of {', '.join(ROLES)}"
    return None


def positive(value: int) -> str | None:
    return None if value > 0 else "must be positive"
