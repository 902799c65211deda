"""Install roles: which extra each part of mlsysops needs, and whether this machine has it.

A node installs `mlsysops[node]`, a gateway `mlsysops[bridge]`, the management host
`mlsysops[controller]`. The libraries of each extra are read from the installed distribution's
own metadata, so pyproject.toml stays the one list; this module only says which programs and
`mlsysops` command groups belong to which role. Daemons call `require_extra` before importing
anything of their extra, so a missing library is a one-line instruction, not an ImportError trace.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

DISTRIBUTION = "mlsysops"
EX_UNAVAILABLE = 69  # sysexits.h: "a service is unavailable"; systemd does not loop on it with our units


@dataclass(frozen=True)
class Role:
    extra: str
    what: str
    cli_groups: tuple[str, ...] = ()


ROLES: tuple[Role, ...] = (
    Role("node", "the node agent (mlsysops-nodeagent)"),
    Role("bridge", "the far-edge bridge (mlsysops-faredge) and its commands", ("devices",)),
    Role(
        "controller",
        "the controller (python -m controller, mlsysops-api) and its commands",
        ("apps", "nodes", "clusters", "api"),
    ),
    Role("ml", "the ML connector (model registry, training, model server) and its commands", ("models",)),
)


def role_of_group(group: str) -> Role | None:
    """The role a `mlsysops` command group needs beyond the core, if any."""
    return next((r for r in ROLES if group in r.cli_groups), None)


def missing(extra: str) -> list[str]:
    """The requirements of `extra` that are not installed or whose installed version does not fit.

    Empty when mlsysops itself runs without installed metadata (a source tree on sys.path):
    there is nothing to check against, and the imports will tell.
    """
    try:
        declared = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return []
    absent: list[str] = []
    for requirement in map(Requirement, declared):
        if requirement.marker is None or not requirement.marker.evaluate({"extra": extra}):
            continue
        if canonicalize_name(requirement.name) == DISTRIBUTION:  # e.g. all = mlsysops[node,bridge,...]
            absent += [name for nested in sorted(requirement.extras) for name in missing(nested)]
            continue
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            absent.append(requirement.name)
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            absent.append(f"{requirement.name} {requirement.specifier} (found {version})")
    return absent


def install_hint(extra: str) -> str:
    return f"pip install 'mlsysops[{extra}]'"


def require_extra(extra: str, program: str) -> None:
    """Exit with a clear message (and EX_UNAVAILABLE) when the libraries of `extra` are missing."""
    absent = missing(extra)
    if absent:
        sys.stderr.write(
            f"{program}: the '{extra}' extra is not installed (missing: {', '.join(absent)}).\n"
            f"Install it with: {install_hint(extra)}\n"
        )
        raise SystemExit(EX_UNAVAILABLE)
