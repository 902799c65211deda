"""The built wheel and sdist, installed per role into clean venvs: each role's programs start,
answer one request and stop; programs of a role that is not installed refuse with the extra
to install; no role brings another role's libraries."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from mlsysops.testing import wait_for

REPO = Path(__file__).parents[2]
GROUPS = {
    "core": ["install", "node"],
    "node": ["install", "node"],
    "bridge": ["devices", "install", "node"],
    "controller": ["api", "apps", "clusters", "install", "node", "nodes"],
}


def run(venv: Any, program: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv.bin(program)), *args], capture_output=True, text=True, timeout=timeout, cwd="/"
    )


def listed_groups(venv: Any) -> list[str]:
    shown = run(venv, "mlsysops", "--help")
    assert shown.returncode == 0, shown.stderr
    commands = shown.stdout.split("Commands:")[1].split("Not installed:")[0]
    return sorted(line.split()[0] for line in commands.splitlines() if line.strip())


def test_the_wheel_carries_stubs_crds_firmware_and_units_and_nothing_of_the_tests(
    dists: tuple[Path, Path],
) -> None:
    wheel, sdist = dists
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "mlsysops/nodeconfig/v1/nodeconfig_pb2.py",
        "mlsysops/nodeconfig/v1/nodeconfig_pb2.pyi",
        "mlsysops/nodeconfig/v1/nodeconfig_pb2_grpc.py",
        "controller/model/crds/mlsysopsapps.yaml",
        "faredge/firmware/main.py",
        "faredge/firmware/hal/esp32.py",
        "faredge/virtual/board_host.mjs",
        "mlsysops/units/mlsysops-nodeagent.service",
        "mlsysops/units/mlsysops-api.service",
        "controller/api/templates/console/base.html",
        "controller/api/static/console.css",
    ):
        assert needed in names, f"{needed} missing from {wheel.name}"
    assert not [n for n in names if n.startswith(("tests/", "bench/", "demo/"))]
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    assert not [m for m in members if "/tests/" in m]
    assert any(m.endswith("/firmware/micropython/main.py") for m in members)


@pytest.mark.parametrize("role", sorted(GROUPS))
def test_each_role_lists_exactly_its_command_groups(role_venvs: dict[str, Any], role: str) -> None:
    assert listed_groups(role_venvs[role]) == GROUPS[role]


def test_no_role_installs_another_roles_libraries(role_venvs: dict[str, Any]) -> None:
    core = role_venvs["core"].distributions()
    own = {role: venv.distributions() - core for role, venv in role_venvs.items() if role != "core"}
    for role, names in own.items():
        others = set().union(*(o for r, o in own.items() if r != role)) - names
        assert not (names & others), f"{role} carries {names & others}"
    assert not {"kubernetes", "pyroute2", "paho-mqtt"} & core


@pytest.mark.parametrize(
    ("program", "args", "extra"),
    [
        ("mlsysops-nodeagent", (), "node"),
        ("mlsysops-faredge", (), "bridge"),
        ("python", ("-m", "controller"), "controller"),
    ],
)
def test_a_daemon_without_its_extra_refuses_naming_it(
    role_venvs: dict[str, Any], program: str, args: tuple[str, ...], extra: str
) -> None:
    refused = run(role_venvs["core"], program, *args)
    assert refused.returncode == 69, refused.stderr
    assert f"pip install 'mlsysops[{extra}]'" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_sdist_installs_and_runs(installer: ModuleType, workdir: Path, dists: tuple[Path, Path]) -> None:
    venv = installer.make_venv(workdir / "from-sdist", str(dists[1]))
    assert listed_groups(venv) == GROUPS["core"]


def test_the_node_role_serves_the_node_api(role_venvs: dict[str, Any], tmp_path: Path) -> None:
    venv = role_venvs["node"]
    socket = tmp_path / "agent.sock"
    agent = subprocess.Popen(
        [
            str(venv.bin("mlsysops-nodeagent")),
            "--simulate",
            "all",
            "--fs-root",
            str(tmp_path / "host"),
            "--runtime-dir",
            str(tmp_path / "run"),
            "--socket",
            str(socket),
            "--metrics-listen",
            "",
            "--node-name",
            "role-test",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: socket.exists() or agent.poll() is not None, timeout=30, what="the agent's socket")
        answered = run(venv, "mlsysops", "node", "--target", f"unix:{socket}", "info", "-o", "json")
        assert answered.returncode == 0, answered.stdout + answered.stderr
        assert json.loads(answered.stdout)["node_name"] == "role-test"
    finally:
        agent.send_signal(signal.SIGTERM)
        output, _ = agent.communicate(timeout=30)
    assert agent.returncode == 0, output


def test_the_bridge_role_serves_its_control_socket(role_venvs: dict[str, Any], tmp_path: Path) -> None:
    venv = role_venvs["bridge"]
    control = tmp_path / "faredge.sock"
    config = tmp_path / "faredge.yaml"
    config.write_text(
        textwrap.dedent(f"""\
            state_dir: {tmp_path / "state"}
            control_socket: {control}
            metrics:
              listen: ""
            nodeagent:
              target: ""
            """)
    )
    bridge = subprocess.Popen(
        [str(venv.bin("mlsysops-faredge")), "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: control.exists() or bridge.poll() is not None, timeout=30, what="the control socket")
        answered = run(venv, "mlsysops", "devices", "--socket", str(control), "list", "-o", "json")
        assert answered.returncode == 0, answered.stdout + answered.stderr
        assert json.loads(answered.stdout) == []
    finally:
        bridge.send_signal(signal.SIGTERM)
        output, _ = bridge.communicate(timeout=30)
    assert bridge.returncode == 0, output


def test_the_controller_role_plans_an_application(role_venvs: dict[str, Any]) -> None:
    venv = role_venvs["controller"]
    examples = REPO / "deploy" / "examples"
    planned = run(
        venv,
        "mlsysops",
        "apps",
        "plan",
        "-f",
        str(examples / "app.yaml"),
        "--inventory",
        str(examples / "inventory"),
        "-o",
        "json",
    )
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert json.loads(planned.stdout)


def test_an_installed_bridge_finds_the_firmware_it_ships(role_venvs: dict[str, Any]) -> None:
    found = subprocess.run(
        [
            str(role_venvs["bridge"].python),
            "-c",
            "from faredge.virtual.firmware import firmware_dir as f; print(f())",
        ],
        capture_output=True,
        text=True,
        cwd="/",
        check=True,
    )
    assert found.stdout.strip().endswith("site-packages/faredge/firmware")


def test_the_controller_role_daemon_deploys_an_app_on_the_standin_api(
    role_venvs: dict[str, Any], tmp_path: Path
) -> None:
    """The daemon from the controller venv, against the stand-in Kubernetes API (served from this
    process, with the test venv's kubernetes client): an app applied there gets its Deployments."""
    sys.path.insert(0, str(REPO / "tests" / "controller" / "integration"))
    from ctlkube_harness import APP, FIXTURES, StandIn, documents

    from controller.kube import resources as R
    from controller.kube.api import KubeApi
    from controller.kube.client import api_client_for_host

    with StandIn() as standin:
        kube = KubeApi(api_client_for_host(standin.host))
        for doc in documents(FIXTURES / "inventory"):
            kube.apply(doc, field_manager="test-admin")
        kubeconfig = tmp_path / "kubeconfig.yaml"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f'clusters: [{{name: s, cluster: {{server: "{standin.host}"}}}}]\n'
            "users: [{name: t, user: {token: not-checked}}]\n"
            "contexts: [{name: s, context: {cluster: s, user: t, namespace: default}}]\n"
            "current-context: s\n"
        )
        daemon = subprocess.Popen(
            [
                str(role_venvs["controller"].python),
                "-m",
                "controller",
                "--kubeconfig",
                str(kubeconfig),
                "--namespace",
                "default",
                "--mechanism",
                "kubernetes",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd="/",
        )
        try:
            kube.apply(documents(FIXTURES / "app.yaml")[0], field_manager="test-user")
            wait_for(
                lambda: daemon.poll() is not None or kube.list(R.DEPLOYMENT, "default")[0],
                timeout=60,
                what=f"{APP}'s Deployments written by the controller daemon",
            )
            assert daemon.poll() is None
        finally:
            daemon.send_signal(signal.SIGTERM)
            output, _ = daemon.communicate(timeout=30)
        assert daemon.returncode == 0, output
