"""`mlsysops install node|bridge|controller` into a temporary root: what it writes, that a
second run changes nothing, that the operator's config is never overwritten, that bad input
changes nothing, and that each default config is one its daemon accepts (its own loader).
The units it writes run under real systemd in test_systemd_units.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from controller.api.daemon import load_config as load_api_config
from controller.api.daemon import parser as api_parser
from faredge.config import parse_config as parse_bridge_config
from mlsysops.cli import main
from mlsysops.install import SERVICES, Service
from nodeagent.config import load_config as load_agent_config

UNITS = Path(__file__).parents[2] / "systemd"
ROLES = sorted(SERVICES)


def venv(root: Path, prefix: str = "/opt/mlsysops") -> Path:
    """A stand-in for the role's venv: the daemons' programs, executable, where ExecStart looks."""
    bin_dir = root / prefix.lstrip("/") / "bin"
    bin_dir.mkdir(parents=True)
    for service in SERVICES.values():
        program = bin_dir / service.program
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
    return root


def install(*args: str) -> Result:
    return CliRunner().invoke(main, ["install", *args])


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every path below root with its mode, mtime and content: what 'changes nothing' compares."""
    found: dict[str, tuple[int, int, bytes]] = {}
    for path in sorted(root.rglob("*")):
        info, content = path.lstat(), path.read_bytes() if path.is_file() else b""
        found[str(path.relative_to(root))] = (info.st_mode, info.st_mtime_ns, content)
    return found


def installed(root: Path, service: Service, path: Path) -> Path:
    return root / str(path).lstrip("/")


@pytest.mark.parametrize("role", ROLES)
def test_install_writes_the_unit_the_config_and_the_directories(tmp_path: Path, role: str) -> None:
    service = SERVICES[role]
    result = install(role, "--root", str(venv(tmp_path)))
    assert result.exit_code == 0, result.output
    unit = tmp_path / "etc/systemd/system" / service.unit
    assert unit.read_text() == (UNITS / service.unit).read_text()  # the default prefix is the shipped one
    config = installed(tmp_path, service, Path(str(service.config)))
    assert config.read_text() == service.default_config
    assert oct(unit.stat().st_mode & 0o777) == oct(config.stat().st_mode & 0o777) == "0o644"
    for directory in ("etc/mlsysops", *(str(d).lstrip("/") for d in service.directories)):
        assert oct((tmp_path / directory).stat().st_mode & 0o777) == "0o755"
    assert f"created    {service.config}" in result.output
    assert f"systemctl enable --now {service.unit}" in result.output
    assert not (tmp_path / "var").exists() and not (tmp_path / "run").exists()  # systemd makes those
    group = tmp_path / "etc/group"
    if service.in_group:  # the node agent's socket group, which the agent's and bridge's units join
        assert (tmp_path / "etc/sysusers.d/mlsysops.conf").read_text().endswith("g mlsysops -\n")
        assert group.read_text().startswith("mlsysops:x:") and "created    group mlsysops" in result.output
        assert "SupplementaryGroups=" in unit.read_text() and "mlsysops" in unit.read_text().split(
            "SupplementaryGroups=")[1].splitlines()[0]  # fmt: skip
    else:
        assert not group.exists() and not (tmp_path / "etc/sysusers.d").exists()


@pytest.mark.parametrize("role", ROLES)
def test_a_second_install_changes_nothing_and_says_so(tmp_path: Path, role: str) -> None:
    venv(tmp_path)
    assert install(role, "--root", str(tmp_path)).exit_code == 0
    before = snapshot(tmp_path)
    again = install(role, "--root", str(tmp_path))
    assert again.exit_code == 0 and again.output.endswith("nothing to change\n"), again.output
    assert snapshot(tmp_path) == before


def test_an_edited_config_is_kept_and_an_outdated_unit_replaced(tmp_path: Path) -> None:
    service = SERVICES["node"]
    venv(tmp_path)
    assert install("node", "--root", str(tmp_path)).exit_code == 0
    config = installed(tmp_path, service, Path(str(service.config)))
    config.write_text("node_name: edge-7\n")
    unit = tmp_path / "etc/systemd/system" / service.unit
    unit.write_text("[Service]\nExecStart=/bin/true\n")  # an older release's unit
    result = install("node", "--root", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert config.read_text() == "node_name: edge-7\n" and "kept" in result.output
    assert unit.read_text() == (UNITS / service.unit).read_text()
    assert f"updated    /etc/systemd/system/{service.unit}" in result.output


def test_prefix_moves_only_exec_start(tmp_path: Path) -> None:
    service = SERVICES["bridge"]
    result = install("bridge", "--root", str(venv(tmp_path, "/srv/mlsysops")), "--prefix", "/srv/mlsysops")
    assert result.exit_code == 0, result.output
    written = (tmp_path / "etc/systemd/system" / service.unit).read_text().splitlines()
    shipped = (UNITS / service.unit).read_text().splitlines()
    changed = [(old, new) for old, new in zip(shipped, written, strict=True) if old != new]
    assert changed == [
        (
            "ExecStart=/opt/mlsysops/bin/mlsysops-faredge --config /etc/mlsysops/faredge.yaml",
            "ExecStart=/srv/mlsysops/bin/mlsysops-faredge --config /etc/mlsysops/faredge.yaml",
        )
    ]


@pytest.mark.parametrize(
    ("arrange", "args", "message"),
    [
        (lambda root: root, ["node"], "mlsysops-nodeagent is not installed"),
        (venv, ["node", "--prefix", "opt/mlsysops"], "expected an absolute path"),
        (venv, ["node", "--prefix", "/opt/ml sysops"], "expected an absolute path"),
        (venv, ["node", "--prefix", "/opt/../mlsysops"], "expected an absolute path"),
        (lambda r: (venv(r) / "etc/mlsysops/api.yaml").mkdir(parents=True), ["controller"], "not a regular"),
        (lambda r: (venv(r) / "etc").write_text(""), ["bridge"], "not a directory"),
        (venv, ["gateway"], "'gateway' is not one of"),
    ],
    ids=["daemon-missing", "relative-prefix", "space-in-prefix", "dotdot-prefix", "dir-as-config",
         "file-as-dir", "unknown-role"],
)  # fmt: skip
def test_bad_input_is_refused_and_changes_nothing(
    tmp_path: Path, arrange: Callable[[Path], object], args: list[str], message: str
) -> None:
    arrange(tmp_path)
    before = snapshot(tmp_path)
    result = install(*args, "--root", str(tmp_path))
    assert result.exit_code != 0 and message in result.output, result.output
    assert snapshot(tmp_path) == before


def test_a_root_that_is_not_a_directory_is_refused(tmp_path: Path) -> None:
    result = install("node", "--root", str(tmp_path / "absent"))
    assert result.exit_code == 1 and "not a directory" in result.output
    assert not (tmp_path / "absent").exists()


def test_the_default_configs_are_accepted_by_their_daemons(tmp_path: Path) -> None:
    node = tmp_path / "nodeagent.yaml"
    node.write_text(SERVICES["node"].default_config)
    agent = load_agent_config(node)
    assert agent.listen.socket == "/run/mlsysops/nodeagent.sock" and not agent.runtimes.enabled
    assert agent.listen.socket_group == "mlsysops" and agent.authz.policy["*"] == "apply"

    # The bridge reads its broker password when it loads the config: point it at a stand-in
    # for the credential systemd passes in.
    password = tmp_path / "bridge.password"
    password.write_text("secret\n")
    raw = yaml.safe_load(SERVICES["bridge"].default_config)
    assert raw["mqtt"]["password_file"] == "/run/credentials/mlsysops-faredge.service/bridge.password"
    raw["mqtt"]["password_file"] = str(password)
    bridge = parse_bridge_config(raw)
    assert bridge.mqtt is not None and bridge.mqtt.password == "secret"
    assert bridge.metrics_listen != agent.telemetry.metrics_listen  # both run on one host

    api = tmp_path / "api.yaml"
    api.write_text(SERVICES["controller"].default_config)
    serve = load_api_config(api, api_parser().parse_args([]))
    assert serve.run_controller and (serve.host, serve.port) == ("127.0.0.1", 8000)
