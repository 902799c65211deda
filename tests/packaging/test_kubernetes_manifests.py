"""deploy/kubernetes (issue 15): every overlay renders (kustomize_render, the subset of Kustomize
it uses) into objects the Kubernetes versions we support accept (kubernetes-validate, strict);
the objects fit together (every reference resolves, every selector selects); the daemons accept
the configuration and flags the manifests give them, and every path those name is mounted;
the privileges are the ones README states; and each probe asks something the real daemon
answers. The RBAC rules are checked against the calls the code makes in
tests/controller/integration/test_ctlkube_rbac.py.
"""

from __future__ import annotations

import shlex
import socket
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kustomize_render import KustomizeError, build, merge

from mlsysops.testing import wait_for

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy" / "kubernetes"
CRDS = REPO / "deploy" / "crds"
OVERLAYS = ("single-cluster", "karmada-host", "karmada-host/karmada-apiserver", "karmada-member")
#: The Kubernetes releases the project supports (kubernetes-validate ships their schemas).
VERSIONS = tuple(f"1.{minor}" for minor in range(30, 38))
#: Secrets the operator creates before applying (README, "Before you apply"); all others are ours.
OPERATOR_SECRETS = {"mlsysops-api-tls", "mlsysops-api-tokens", "mlsysops-karmada-kubeconfig"}
WORKLOADS = ("Deployment", "DaemonSet")


def render(overlay: str) -> list[dict[str, Any]]:
    return build(KUBERNETES / "overlays" / overlay)


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            yield obj, obj["spec"]["template"]["spec"]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


# ------------------------------------------------------------------ schema


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_for_each_supported_kubernetes_version(overlay: str, version: str) -> None:
    objects = render(overlay)
    assert objects
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(
                f"{overlay} {obj['kind']}/{obj['metadata']['name']} on {version}: {where}: {exc.message}"
            )


@pytest.mark.parametrize("version", VERSIONS)
def test_the_crds_applied_first_are_valid_for_each_supported_version(version: str) -> None:
    for path in sorted(CRDS.glob("*.yaml")):
        kubernetes_validate.validate(yaml.safe_load(path.read_text()), version, strict=True)


def test_the_rbac_names_only_kinds_the_crds_define() -> None:
    plurals = {yaml.safe_load(p.read_text())["spec"]["names"]["plural"] for p in CRDS.glob("*.yaml")}
    for overlay in OVERLAYS:
        for role in (o for o in render(overlay) if o["kind"] in ("Role", "ClusterRole")):
            for rule in role["rules"]:
                if "mlsysops.eu" in rule["apiGroups"]:
                    assert {r.split("/")[0] for r in rule["resources"]} <= plurals, rule


# ------------------------------------------------------------------ the renderer refuses as kustomize does


def test_the_renderer_refuses_files_outside_the_root_unknown_fields_and_duplicates(tmp_path: Path) -> None:
    (tmp_path / "k").mkdir()
    (tmp_path / "outside.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n")
    (tmp_path / "k" / "kustomization.yaml").write_text("resources: [../outside.yaml]\n")
    with pytest.raises(KustomizeError, match="outside the kustomization's root"):
        build(tmp_path / "k")
    (tmp_path / "k" / "kustomization.yaml").write_text("namePrefix: x-\n")
    with pytest.raises(KustomizeError, match="namePrefix"):
        build(tmp_path / "k")
    (tmp_path / "k" / "ns.yaml").write_text((tmp_path / "outside.yaml").read_text())
    (tmp_path / "k" / "kustomization.yaml").write_text("resources: [ns.yaml, ns.yaml]\n")
    with pytest.raises(KustomizeError, match="added twice"):
        build(tmp_path / "k")


def test_strategic_merge_merges_named_lists_and_replaces_the_others() -> None:
    base = {"containers": [{"name": "a", "image": "x", "args": ["1", "2"]}], "tolerations": [{"key": "k"}]}
    patch = {"containers": [{"name": "a", "args": ["3"]}, {"name": "b", "image": "y"}], "tolerations": []}
    assert merge(base, patch) == {
        "containers": [{"name": "a", "image": "x", "args": ["3"]}, {"name": "b", "image": "y"}],
        "tolerations": [],
    }


# ------------------------------------------------------------------ the objects fit together


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_reference_resolves_and_every_selector_selects(overlay: str) -> None:
    objects = render(overlay)
    have = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objects}
    namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    for obj in objects:
        namespace = obj["metadata"].get("namespace")
        assert namespace is None or namespace in namespaces, f"{obj['metadata']}: namespace not created"
    for workload, pod in pod_specs(objects):
        ns = workload["metadata"]["namespace"]
        if "serviceAccountName" in pod:
            assert ("ServiceAccount", ns, pod["serviceAccountName"]) in have
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", ns, volume["configMap"]["name"]) in have, volume
            if "secret" in volume:
                assert volume["secret"]["secretName"] in OPERATOR_SECRETS, volume
        names = {v["name"] for v in pod.get("volumes", [])}
        for container in containers(pod):
            assert {m["name"] for m in container.get("volumeMounts", [])} <= names, container["name"]
        labels = pod_labels(workload)
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for obj in objects:
        selector = {
            "Service": lambda o: o["spec"]["selector"],
            "PodDisruptionBudget": lambda o: o["spec"]["selector"]["matchLabels"],
            "NetworkPolicy": lambda o: o["spec"]["podSelector"].get("matchLabels", {}),
        }.get(obj["kind"])
        if selector is not None:
            wanted = selector(obj)
            assert any(wanted.items() <= pod_labels(w).items() for w, _ in pod_specs(objects)), obj[
                "metadata"
            ]
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        ref = binding["roleRef"]
        ns = binding["metadata"].get("namespace", "") if ref["kind"] == "Role" else ""
        assert (ref["kind"], ns, ref["name"]) in have, binding["metadata"]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def test_every_pod_runs_in_the_daemons_namespace_and_no_container_escalates() -> None:
    for overlay in OVERLAYS:
        for workload, pod in pod_specs(render(overlay)):
            assert workload["metadata"]["namespace"] == "mlsysops-system"
            for container in containers(pod):
                security = container["securityContext"]
                where = f"{overlay} {workload['metadata']['name']}/{container['name']}"
                assert security["allowPrivilegeEscalation"] is False, where
                assert security["readOnlyRootFilesystem"] is True, where
                assert security["capabilities"]["drop"] == ["ALL"], where
                assert not security.get("privileged"), where
                assert "resources" in container and "memory" in container["resources"]["limits"], where


# ------------------------------------------------------------------ privileges, as README states them


def host_paths(pod: dict[str, Any]) -> dict[str, str]:
    return {v["hostPath"]["path"]: v["name"] for v in pod["volumes"] if "hostPath" in v}


def mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def test_the_node_agent_has_its_kernel_interfaces_and_nothing_else() -> None:
    objects = render("single-cluster")
    pod = named(objects, "DaemonSet", "mlsysops-nodeagent")["spec"]["template"]["spec"]
    (agent,) = pod["containers"]
    security = agent["securityContext"]
    assert security["capabilities"]["add"] == ["NET_ADMIN", "SYS_ADMIN"]
    assert pod["hostNetwork"] is True and not pod.get("hostPID") and not pod.get("hostIPC")
    assert pod["automountServiceAccountToken"] is False
    assert set(host_paths(pod)) == {
        "/sys/fs/cgroup",
        "/sys/devices/system/cpu",
        "/run/netns",
        "/run/mlsysops",
        "/run/mlsysops-nodeagent",
    }
    mounted = mounts(agent)
    assert mounted["/run/netns"]["readOnly"] is True
    assert mounted["/run/netns"]["mountPropagation"] == "HostToContainer"
    assert not mounted["/sys/fs/cgroup"].get("readOnly") and not mounted["/sys/devices/system/cpu"].get(
        "readOnly"
    )


def test_the_bridge_is_unprivileged_and_gets_serial_ports_by_rule_not_dev() -> None:
    objects = render("single-cluster")
    daemonset = named(objects, "DaemonSet", "mlsysops-faredge")
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"mlsysops.eu/faredge-bridge": "true"}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert not pod.get("hostNetwork") and pod["automountServiceAccountToken"] is False
    (bridge,) = pod["containers"]
    assert "add" not in bridge["securityContext"]["capabilities"]
    assert bridge["resources"]["limits"]["squat.ai/serial"] == "1"
    assert not any(p == "/dev" or p.startswith("/dev/") for p in host_paths(pod))
    assert mounts(bridge)["/run/mlsysops"]["readOnly"] is True
    (owner,) = pod["initContainers"]
    assert owner["securityContext"]["capabilities"]["add"] == ["CHOWN"]
    plugin = named(objects, "DaemonSet", "mlsysops-serial-device-plugin")["spec"]["template"]["spec"]
    assert plugin["nodeSelector"] == pod["nodeSelector"]
    assert mounts(plugin["containers"][0])["/dev"]["readOnly"] is True
    rule = yaml.safe_load(plugin["containers"][0]["args"][-1])
    assert rule["name"] == "serial"  # squat.ai/serial, what the bridge asks for
    # the bridge is in the node agent's socket group, which the agent lets report devices
    agent_config = yaml.safe_load(named(objects, "ConfigMap", "mlsysops-nodeagent")["data"]["nodeagent.yaml"])
    group = pod["securityContext"]["runAsGroup"]
    assert agent_config["listen"]["socket_group"] == str(group)
    assert agent_config["authz"]["policy"][f"gid:{group}"] == "apply"


@pytest.mark.parametrize("overlay", ["single-cluster", "karmada-host"])
def test_the_controller_meets_the_restricted_pod_security_level(overlay: str) -> None:
    """What Pod Security's "restricted" level checks (the namespace warns on it)."""
    pod = named(render(overlay), "Deployment", "mlsysops-controller")["spec"]["template"]["spec"]
    assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    assert not any("hostPath" in v for v in pod["volumes"])
    allowed = {"configMap", "secret", "emptyDir", "projected", "downwardAPI", "persistentVolumeClaim"}
    assert all(set(v) - {"name"} <= allowed for v in pod["volumes"])
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in containers(pod):
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert not any("hostPort" in port for port in container.get("ports", []))


def test_one_controller_at_a_time() -> None:
    """Leader election on: a rollout's new pod waits as a standby until the old one releases
    the Lease, so it may start first (maxSurge) and the API stays served (maxUnavailable 0)."""
    for overlay in ("single-cluster", "karmada-host"):
        objects = render(overlay)
        deployment = named(objects, "Deployment", "mlsysops-controller")
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"] == {
            "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
        api_config = yaml.safe_load(named(objects, "ConfigMap", "mlsysops-controller")["data"]["api.yaml"])
        assert api_config["leader_elect"] is True and api_config["run_controller"] is True


def test_network_policies_deny_by_default() -> None:
    for overlay in ("single-cluster", "karmada-host", "karmada-member"):
        deny = named(render(overlay), "NetworkPolicy", "default-deny")
        assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


# ------------------------------------------------------------------ the daemons accept what they are given


def command_line(container: dict[str, Any]) -> list[str]:
    """The container's args as the kubelet expands them (a fieldRef variable: the node's name)."""
    args = list(container["args"])
    for env in container.get("env", []):
        if "valueFrom" in env:
            args = [a.replace(f"$({env['name']})", "node-1") for a in args]
    return args


def under_a_mount(container: dict[str, Any], path: str) -> bool:
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts(container))


def test_the_node_agent_accepts_its_flags_and_config_and_every_path_is_mounted() -> None:
    from nodeagent.config import parse_config
    from nodeagent.daemon import overrides, parse_args

    objects = render("single-cluster")
    (agent,) = named(objects, "DaemonSet", "mlsysops-nodeagent")["spec"]["template"]["spec"]["containers"]
    assert agent["command"] == ["/opt/mlsysops/bin/mlsysops-nodeagent"]
    args = parse_args(command_line(agent))
    assert overrides(args) == {"node_name": "node-1"}
    raw = yaml.safe_load(named(objects, "ConfigMap", "mlsysops-nodeagent")["data"]["nodeagent.yaml"])
    config = parse_config(raw)
    assert under_a_mount(agent, str(args.config))
    for path in (
        config.runtime_dir,
        config.listen.socket,
        "/" + config.host.cgroup_mount,
        config.host.netns_dir,
        "/sys/devices/system/cpu/cpufreq",
    ):
        assert under_a_mount(agent, path), path
    assert config.telemetry.metrics_listen.startswith("127.0.0.1:")
    assert not config.listen.tcp and not config.runtimes.enabled


def test_the_bridge_accepts_its_config_and_every_path_is_mounted(tmp_path: Path) -> None:
    from faredge.config import parse_config

    objects = render("single-cluster")
    (bridge,) = named(objects, "DaemonSet", "mlsysops-faredge")["spec"]["template"]["spec"]["containers"]
    assert bridge["command"] == ["/opt/mlsysops/bin/mlsysops-faredge"]
    assert bridge["args"] == ["--config", "/etc/mlsysops/faredge.yaml"]
    config = parse_config(
        yaml.safe_load(named(objects, "ConfigMap", "mlsysops-faredge")["data"]["faredge.yaml"])
    )
    for path in (
        str(config.state_dir),
        str(config.control_socket),
        config.nodeagent_target.removeprefix("unix:"),
        "/etc/mlsysops/faredge.yaml",
    ):
        assert under_a_mount(bridge, path), path
    assert config.metrics_listen.endswith(":9465") and config.mqtt is None
    assert config.serial is not None and all(p.path.startswith("/dev/tty") for p in config.serial.ports)


@pytest.mark.parametrize("overlay", ["single-cluster", "karmada-host"])
def test_the_api_accepts_its_flags_and_config_and_every_path_is_mounted(overlay: str, tmp_path: Path) -> None:
    from controller.api.daemon import load_config, parser
    from controller.mechanisms import MechanismRegistry

    objects = render(overlay)
    deployment = named(objects, "Deployment", "mlsysops-controller")
    (api,) = deployment["spec"]["template"]["spec"]["containers"]
    assert api["command"] == ["/opt/mlsysops/bin/mlsysops-api"]
    args = parser().parse_args(api["args"])
    config_file = tmp_path / "api.yaml"
    config_file.write_text(named(objects, "ConfigMap", "mlsysops-controller")["data"]["api.yaml"])
    config = load_config(config_file, args)
    assert config.run_controller and config.kubeconfig and config.tls_cert and config.tls_key
    assert set(config.mechanisms) <= set(MechanismRegistry.from_entry_points().names())
    assert ("karmada" in config.mechanisms) == (overlay == "karmada-host")
    for path in (
        args.config,
        config.tls_cert,
        config.tls_key,
        config.tokens_file,
        config.kubeconfig,
        config.policy_state,
    ):
        assert under_a_mount(api, str(path)), path
    (port,) = api["ports"]
    assert port["containerPort"] == config.port and config.host == "0.0.0.0"
    pod = deployment["spec"]["template"]["spec"]
    assert pod.get("automountServiceAccountToken", True) == (overlay == "single-cluster")


def test_the_in_cluster_kubeconfig_loads_with_the_pods_service_account(tmp_path: Path) -> None:
    from kubernetes import client, config

    text = named(render("single-cluster"), "ConfigMap", "mlsysops-controller")["data"]["kubeconfig"]
    secrets = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert f"{secrets}/token" in text and f"{secrets}/ca.crt" in text
    (tmp_path / "token").write_text("the-token")  # as the kubelet projects it: no newline
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(text.replace(secrets, str(tmp_path)))
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    assert configuration.host == "https://kubernetes.default.svc"
    assert configuration.api_key == {"BearerToken": "Bearer the-token"}


# ------------------------------------------------------------------ each probe asks what the daemon answers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_node_agent_probe_passes_against_a_running_agent_and_fails_without_one(tmp_path: Path) -> None:
    objects = render("single-cluster")
    (agent,) = named(objects, "DaemonSet", "mlsysops-nodeagent")["spec"]["template"]["spec"]["containers"]
    probe = agent["livenessProbe"]["exec"]["command"]
    assert probe == agent["startupProbe"]["exec"]["command"] and probe[0] == "/opt/mlsysops/bin/python"
    raw = yaml.safe_load(named(objects, "ConfigMap", "mlsysops-nodeagent")["data"]["nodeagent.yaml"])
    sock = tmp_path / "run" / "nodeagent.sock"
    raw["runtime_dir"] = str(tmp_path / "journal")
    raw["listen"]["socket"] = str(sock)
    raw["telemetry"]["metrics_listen"] = ""
    raw["mechanisms"] = {"network": {"enabled": False}}  # no netlink here: the probe is the point
    (tmp_path / "nodeagent.yaml").write_text(yaml.safe_dump(raw))
    local_probe = [sys.executable, *[a.replace("/run/mlsysops/nodeagent.sock", str(sock)) for a in probe[1:]]]

    assert subprocess.run(local_probe, capture_output=True, timeout=60).returncode != 0  # nothing listens
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nodeagent",
            "--config",
            str(tmp_path / "nodeagent.yaml"),
            "--simulate",
            "all",
            "--fs-root",
            str(tmp_path / "root"),
            "--node-name",
            "node-1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: sock.exists() or proc.poll() is not None, timeout=60, what="the agent's socket")
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        result = subprocess.run(local_probe, capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr.decode()
        mode = sock.stat()
        assert stat.S_IMODE(mode.st_mode) == 0o660 and mode.st_gid == int(raw["listen"]["socket_group"])
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_the_bridge_probe_is_served_by_the_bridge_with_its_config(tmp_path: Path) -> None:
    from faredge.bootstrap import build as build_bridge
    from faredge.config import parse_config

    objects = render("single-cluster")
    (bridge,) = named(objects, "DaemonSet", "mlsysops-faredge")["spec"]["template"]["spec"]["containers"]
    (metrics,) = bridge["ports"]
    assert bridge["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": metrics["name"]}
    raw = yaml.safe_load(named(objects, "ConfigMap", "mlsysops-faredge")["data"]["faredge.yaml"])
    assert raw["metrics"]["listen"].endswith(f":{metrics['containerPort']}")
    port = free_port()
    raw.update(state_dir=str(tmp_path / "state"), control_socket=str(tmp_path / "faredge.sock"))
    raw["metrics"]["listen"] = f"127.0.0.1:{port}"
    raw["nodeagent"]["target"] = ""  # no agent here; the ports stay absent, scanned for
    running = build_bridge(parse_config(raw))
    running.start()
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}{bridge['livenessProbe']['httpGet']['path']}"
        ) as r:
            assert r.status == 200 and b"# TYPE" in r.read()
    finally:
        running.stop()


def test_the_api_probe_needs_no_token_and_the_routes_do(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from controller.api.app import create_app
    from controller.api.context import ApiContext, ApiSettings
    from controller.api.tokens import TokenStore
    from controller.store import open as open_store

    (api,) = named(render("single-cluster"), "Deployment", "mlsysops-controller")["spec"]["template"]["spec"][
        "containers"
    ]
    probe = api["livenessProbe"]["httpGet"]
    assert probe["scheme"] == "HTTPS" and probe["port"] == api["ports"][0]["name"]
    store = open_store(tmp_path / "store.db")
    try:
        with TestClient(
            create_app(ApiContext(store, TokenStore(tmp_path / "tokens.json"), ApiSettings()))
        ) as web:
            assert web.get(probe["path"]).status_code == 200
            assert web.get("/api/v1/apps").status_code == 401
    finally:
        store.close()


def test_readme_names_every_operator_secret_and_the_commands_it_shows_exist() -> None:
    readme = (KUBERNETES / "README.md").read_text()
    for secret in OPERATOR_SECRETS:
        assert secret in readme, secret
    for line in readme.splitlines():
        if line.startswith("kubectl") and " apply -k " in line:
            target = shlex.split(line)[-1]
            assert (REPO / target / "kustomization.yaml").is_file(), line
