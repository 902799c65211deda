"""Roles, checked without installing anything: each daemon imports only the core's and its own
extra's libraries (read from the distribution's metadata, i.e. from pyproject.toml), and the
`mlsysops` CLI shows only the groups whose extra is installed."""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Mapping
from importlib import metadata

import grimp
import pytest
from click.testing import CliRunner
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mlsysops import roles
from mlsysops.cli import main

OUR_PACKAGES = ("mlsysops", "nodeagent", "faredge", "controller", "mlconnector")
EXTRA_OF_PACKAGE = {
    "mlsysops": None,
    "nodeagent": "node",
    "faredge": "bridge",
    "controller": "controller",
    "mlconnector": "ml",
}

# Modules the wheel does not ship (setup.py): they run from a source checkout and import the test
# suite's support modules (a private containerd, the busybox image).
CHECKOUT_ONLY = {"mlconnector.experiment.host"}


def declared(extra: str | None) -> set[str]:
    """Canonical distribution names the core (extra None) or an extra requires."""
    names: set[str] = set()
    for requirement in map(Requirement, metadata.requires("mlsysops") or []):
        in_core = requirement.marker is None
        if (extra is None and in_core) or (
            extra is not None and not in_core and requirement.marker.evaluate({"extra": extra})  # type: ignore[union-attr]
        ):
            names.add(canonicalize_name(requirement.name))
    return names


@functools.cache
def ships(distribution: str, module: str) -> bool:
    """Whether `distribution` installs the (sub)package or module `module`."""
    path = module.replace(".", "/")
    return any(
        str(f).startswith(path + "/") or str(f) == path + ".py" for f in metadata.files(distribution) or ()
    )


def distributions_of(
    graph: grimp.ImportGraph, importer: str, top: str, owners: Mapping[str, list[str]]
) -> list[str]:
    """Who provides what `importer` imports from the external package `top`. The graph knows an
    external package by its top-level name only; a namespace package shipped by several
    distributions (google: protobuf, google-auth, ...) is resolved through the import's own line
    (`from google.protobuf import ...` is protobuf's)."""
    candidates = owners.get(top, [top])
    if len(candidates) < 2:
        return candidates
    found: set[str] = set()
    for detail in graph.get_import_details(importer=importer, imported=top):
        for sub in re.findall(rf"\b{top}\.(\w+)", detail["line_contents"]):
            found |= {d for d in candidates if ships(d, f"{top}.{sub}")}
    return sorted(found) or candidates


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*OUR_PACKAGES, include_external_packages=True)


@pytest.mark.parametrize("package", OUR_PACKAGES)
def test_each_package_imports_only_its_roles_libraries(graph: grimp.ImportGraph, package: str) -> None:
    owners = metadata.packages_distributions()
    allowed = declared(None) | (declared(EXTRA_OF_PACKAGE[package]) if EXTRA_OF_PACKAGE[package] else set())
    used: dict[str, str] = {}
    for module in (graph.find_descendants(package) | {package}) - CHECKOUT_ONLY:
        for imported in graph.find_modules_directly_imported_by(module):
            top = imported.split(".")[0]
            if top in OUR_PACKAGES or top in sys.stdlib_module_names:
                continue
            for distribution in distributions_of(graph, module, top, owners):
                used.setdefault(canonicalize_name(distribution), module)
    foreign = {name: module for name, module in used.items() if name not in allowed}
    assert not foreign, f"{package} imports libraries outside its role: {foreign}"


def test_the_extras_declare_every_role_and_all_is_their_union() -> None:
    for role in roles.ROLES:
        assert declared(role.extra), f"extra {role.extra!r} is not declared in pyproject.toml"
    assert roles.missing("all") == []


def test_groups_of_a_missing_extra_are_hidden_and_the_help_says_how_to_get_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("mlsysops.cli.missing", lambda extra: ["kubernetes"] if extra == "controller" else [])
    shown = CliRunner().invoke(main, ["--help"])
    assert shown.exit_code == 0
    listed = shown.output.split("Commands:")[1].split("Not installed:")[0]
    assert "node " in listed and "devices" in listed
    assert "apps" not in listed and "clusters" not in listed
    assert "apps, clusters, nodes  pip install 'mlsysops[controller]'" in shown.output
    refused = CliRunner().invoke(main, ["apps", "plan"])
    assert refused.exit_code == 1
    hint = "needs the 'controller' extra (missing: kubernetes): pip install 'mlsysops[controller]'"
    assert hint in refused.output


def test_require_extra_names_the_extra_and_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    roles.require_extra("node", "mlsysops-nodeagent")  # installed here: returns quietly
    monkeypatch.setattr(roles, "missing", lambda extra: ["pyroute2", "psutil"])
    with pytest.raises(SystemExit) as stopped:
        roles.require_extra("node", "mlsysops-nodeagent")
    assert stopped.value.code == roles.EX_UNAVAILABLE
    assert capsys.readouterr().err == (
        "mlsysops-nodeagent: the 'node' extra is not installed (missing: pyroute2, psutil).\n"
        "Install it with: pip install 'mlsysops[node]'\n"
    )
