"""The pure parts of runtimes: handler configuration and drop-in, workload specs and their OCI spec,
the switch state machine (every path, with a fake runtime), and image tarball checks. No I/O
beyond temporary files."""

from __future__ import annotations

import io
import json
import tarfile
import tomllib
from pathlib import Path

import pytest
from ociimage import write_oci_tarball

from nodeagent.errors import InvalidSpec
from nodeagent.host.ocitar import chain_ids, read_tarball
from nodeagent.mechanisms.runtime_handlers import (
    HandlerConfig,
    merge_handlers,
    missing_binaries,
    render_dropin,
    runsc_wrapper,
    runtime_class_name,
    shim_binary,
    standard_handlers,
)
from nodeagent.mechanisms.runtime_switch import Outcome, switch
from nodeagent.mechanisms.workload_spec import WorkloadSpec, cgroups_path, oci_spec, validate

# ---------------------------------------------------------------- handlers


def test_shim_names_follow_containerds_rule() -> None:
    assert shim_binary("io.containerd.runc.v2") == "containerd-shim-runc-v2"
    assert shim_binary("io.containerd.kata.v2") == "containerd-shim-kata-v2"
    assert shim_binary("io.containerd.runsc.v1") == "containerd-shim-runsc-v1"
    assert shim_binary("/opt/shim") == "/opt/shim"


def test_runtime_class_names_are_dns_labels() -> None:
    assert runtime_class_name("runsc") == "runsc"
    assert runtime_class_name("Kata_Qemu") == "kata-qemu"
    assert len(runtime_class_name("x" * 100)) == 63


def test_dropin_round_trips_through_a_toml_parser_and_later_files_override() -> None:
    wanted = standard_handlers("/run/mlsysops/runsc-wrapper")
    text = render_dropin(wanted)
    parsed = tomllib.loads(text)
    assert parsed["version"] == 2
    assert merge_handlers([("dropin", parsed)]) == [
        HandlerConfig(h.name, h.runtime_type, h.binary_name, "dropin")
        for h in sorted(wanted, key=lambda h: h.name)
    ]
    user = {
        "plugins": {
            "io.containerd.grpc.v1.cri": {
                "containerd": {
                    "runtimes": {
                        "runc": {
                            "runtime_type": "io.containerd.runc.v2",
                            "options": {"BinaryName": "/usr/local/bin/runc"},
                        },
                        "broken": "not a table",
                    }
                }
            }
        }
    }
    merged = {h.name: h for h in merge_handlers([("config.toml", user), ("dropin", parsed)])}
    assert merged["runc"].binary_name == "" and merged["runc"].source == "dropin"
    assert "broken" not in merged
    assert render_dropin(wanted) == text  # stable: written only when the handler set changes


def test_missing_binaries_use_containerds_words() -> None:
    kata = HandlerConfig("kata", "io.containerd.kata.v2")
    crun = HandlerConfig("crun", "io.containerd.runc.v2", "crun")
    assert missing_binaries(kata, lambda name: None) == "containerd-shim-kata-v2: file does not exist"
    only_shim = {"containerd-shim-runc-v2": "/usr/bin/containerd-shim-runc-v2"}
    assert "crun: file does not exist" in missing_binaries(crun, only_shim.get)
    assert missing_binaries(crun, lambda name: f"/usr/bin/{name}") == ""


def test_runsc_wrapper_adds_ptrace_and_no_network_unless_a_netns_path_is_given(tmp_path: Path) -> None:
    import subprocess

    fake = tmp_path / "runsc"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    wrapper = tmp_path / "wrapper"
    wrapper.write_text(runsc_wrapper(str(fake)))
    wrapper.chmod(0o755)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for namespaces, expect_none in (
        ([{"type": "network"}], True),
        ([{"type": "network", "path": "/run/netns/x"}], False),
    ):
        (bundle / "config.json").write_text(json.dumps({"linux": {"namespaces": namespaces}}, indent=2))
        out = subprocess.run(
            [str(wrapper), "--root", str(tmp_path / "root"), "create", "--bundle", str(bundle), "id"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.startswith("--platform=ptrace ")
        assert ("--network=none" in out) is expect_none
        assert out.rstrip().endswith(f"create --bundle {bundle} id")


# ---------------------------------------------------------------- workload specs

HANDLERS = ["runc", "runsc", "kata"]


def valid(**extra: object) -> dict[str, object]:
    return {"name": "web", "image": "busybox:1", "args": ["/bin/sh"], **extra}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"name": "Web!"}, "name"),
        ({"image": ""}, "image"),
        ({"handler": "docker"}, "handler"),
        ({"args": []}, "args"),
        ({"args": "sh -c true"}, "args"),
        ({"env": ["NOEQUALS"]}, "env[0]"),
        ({"mounts": [{"source": "relative", "target": "/x"}]}, "mounts[0].source"),
        ({"mounts": [{"source": "/srv/data/../../etc", "target": "/x"}]}, "mounts[0].source"),
        ({"mounts": [{"source": "/srv/data", "target": "/proc/x"}]}, "mounts[0].target"),
        ({"mounts": [{"source": "/srv/data", "target": "/"}]}, "mounts[0].target"),
        ({"mounts": [{"source": "/srv/data", "target": "/x", "readonly": "no"}]}, "mounts[0].readonly"),
        ({"cgroup": "../escape"}, "cgroup"),
        ({"netns": "a/b"}, "netns"),
        ({"cpu_quota_us": -1}, "cpu_quota_us"),
        ({"memory_max_bytes": 1024}, "memory_max_bytes"),
        ({"privileged": True}, "privileged"),
        ({"readiness": "true"}, "readiness"),
        ({"readiness_timeout_s": 0.01}, "readiness_timeout_s"),
    ],
)
def test_every_bad_field_is_named(extra: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        validate(valid(**extra), handlers=HANDLERS, allowed_roots=["/srv/data"])
    assert caught.value.field == field


def test_a_symlink_cannot_escape_the_allowed_roots() -> None:
    links = {"/srv/data/link": "/etc"}
    with pytest.raises(InvalidSpec, match="escapes"):
        validate(
            valid(mounts=[{"source": "/srv/data/link", "target": "/x"}]),
            handlers=HANDLERS,
            allowed_roots=["/srv/data"],
            resolve=lambda p: links.get(p, p),
        )


def test_a_valid_spec_round_trips_and_becomes_an_oci_spec() -> None:
    spec = validate(
        valid(
            handler="runsc",
            env=["PATH=/bin", "A=1"],
            cgroup="apps",
            mounts=[{"source": "/srv/data/in", "target": "/in"}],
            cpu_quota_us=50000,
            memory_max_bytes=64 << 20,
        ),
        handlers=HANDLERS,
        allowed_roots=["/srv/data"],
    )
    assert WorkloadSpec.from_json(spec.to_json()) == spec
    oci = oci_spec(spec, cgroup_root="mlsysops", netns_dir="/run/netns")
    assert oci["process"]["args"] == ["/bin/sh"]
    assert oci["process"]["env"] == ["PATH=/bin", "A=1"]
    assert oci["linux"]["cgroupsPath"] == "/mlsysops/apps/web" == cgroups_path(spec, "mlsysops")
    assert oci["linux"]["resources"]["cpu"] == {"quota": 50000, "period": 100000}
    assert {
        "destination": "/in",
        "type": "bind",
        "source": "/srv/data/in",
        "options": ["rbind", "ro"],
    } in oci["mounts"]
    assert {"type": "network"} in oci["linux"]["namespaces"]
    joined = oci_spec(
        spec.__class__(**{**spec.__dict__, "netns": "edge"}), cgroup_root="m", netns_dir="/run/netns"
    )
    assert {"type": "network", "path": "/run/netns/edge"} in joined["linux"]["namespaces"]


# ---------------------------------------------------------------- the switch machine


class FakeOps:
    """A runtime where chosen steps fail; records what ran."""

    def __init__(self, fail: set[str]) -> None:
        self.fail = fail
        self.calls: list[str] = []

    def _do(self, step: str, spec: WorkloadSpec) -> None:
        self.calls.append(f"{step} {spec.handler}")
        if f"{step} {spec.handler}" in self.fail:
            raise RuntimeError(f"{step} failed on {spec.handler}")

    def stop(self, spec: WorkloadSpec) -> None:
        self._do("stop", spec)

    def start(self, spec: WorkloadSpec, previous_handler: str) -> None:
        self._do("start", spec)

    def verify(self, spec: WorkloadSpec) -> None:
        self._do("verify", spec)

    def discard(self, spec: WorkloadSpec) -> None:
        self._do("discard", spec)


CURRENT = WorkloadSpec("web", "busybox:1", "runc", ("/bin/sh",))


def test_switch_happy_path() -> None:
    ops = FakeOps(set())
    result = switch(ops, CURRENT, "runsc")
    assert result.outcome is Outcome.SWITCHED and result.handler == "runsc" and result.ok
    assert ops.calls == ["stop runc", "start runsc", "verify runsc"]


@pytest.mark.parametrize("failing", ["start kata", "verify kata"])
def test_a_failed_new_handler_rolls_back(failing: str) -> None:
    ops = FakeOps({failing})
    result = switch(ops, CURRENT, "kata")
    assert result.outcome is Outcome.ROLLED_BACK and result.handler == "runc" and not result.ok
    assert ops.calls[-3:] == ["discard kata", "start runc", "verify runc"]
    assert result.error.startswith("kata: ") and "failed on kata" in result.error


def test_a_failed_stop_changes_nothing() -> None:
    ops = FakeOps({"stop runc"})
    result = switch(ops, CURRENT, "runsc")
    assert (
        result.outcome is Outcome.UNCHANGED and result.handler == "runc" and "could not stop" in result.error
    )
    assert ops.calls == ["stop runc"]


def test_a_failed_rollback_says_both_reasons() -> None:
    ops = FakeOps({"start kata", "verify runc"})
    result = switch(ops, CURRENT, "kata")
    assert result.outcome is Outcome.DOWN and result.handler == ""
    assert "start failed on kata" in result.error and "verify failed on runc" in result.error
    assert ops.calls[-1] == "discard runc"


def test_switching_to_the_same_handler_does_nothing() -> None:
    ops = FakeOps(set())
    assert switch(ops, CURRENT, "runc").outcome is Outcome.UNCHANGED and ops.calls == []


# ---------------------------------------------------------------- image tarballs


def test_the_test_image_reads_back(tmp_path: Path) -> None:
    image = read_tarball(write_oci_tarball(tmp_path / "i.tar", "x/y:1"))
    assert image.ref_name == "x/y:1" and len(image.layers) == 1
    assert chain_ids(image.diff_ids) == image.diff_ids  # one layer: its chain id is its diff id


def _retar(source: Path, target: Path, change: dict[str, bytes | None]) -> Path:
    with tarfile.open(source) as old, tarfile.open(target, "w") as new:
        for member in old.getmembers():
            data = old.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name in change:
                data = change[member.name]
                if data is None:
                    continue
                member.size = len(data)
            new.addfile(member, io.BytesIO(data) if data is not None else None)
    return target


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"index.json": b"{not json"}, "index.json: not valid JSON"),
        ({"index.json": b'{"manifests": []}'}, "lists no image manifest"),
        ({"oci-layout": None, "index.json": None}, "neither an OCI layout"),
    ],
)
def test_malformed_tarballs_are_refused_with_the_reason(
    tmp_path: Path, change: dict[str, bytes | None], reason: str
) -> None:
    good = write_oci_tarball(tmp_path / "good.tar")
    with pytest.raises(InvalidSpec, match=reason) as caught:
        read_tarball(_retar(good, tmp_path / "bad.tar", change))
    assert caught.value.field == "image_tarball"


def test_a_blob_that_does_not_match_its_digest_is_refused(tmp_path: Path) -> None:
    good = write_oci_tarball(tmp_path / "good.tar")
    image = read_tarball(good)
    config = image.config.member
    with tarfile.open(good) as tar:
        body = tar.extractfile(config).read()  # type: ignore[union-attr]
    with pytest.raises(InvalidSpec, match="does not match its digest"):
        read_tarball(_retar(good, tmp_path / "bad.tar", {config: body.replace(b"amd64", b"arm64")}))


# ---------------------------------------------------------------- the composition root


def test_the_bootstrap_builds_the_workload_service_only_when_enabled_and_opens_nothing(
    tmp_path: Path,
) -> None:
    from nodeagent.bootstrap import workload_service
    from nodeagent.config import parse_config
    from nodeagent.host.runtimefiles import restart_unit
    from nodeagent.service.events import EventBus

    assert workload_service(parse_config({}), EventBus()) is None
    config = parse_config(
        {
            "runtime_dir": str(tmp_path),
            "runtimes": {
                "enabled": True,
                "containerd_socket": str(tmp_path / "none.sock"),
                "restart_unit": "containerd.service",
                "allowed_mount_roots": "/srv/a:/srv/b",
            },
        }
    )
    service = workload_service(config, EventBus())
    assert service is not None and service.settings.allowed_mount_roots == ("/srv/a", "/srv/b")
    restart = service._restart_containerd
    assert restart is not None and restart.func is restart_unit and restart.args == ("containerd.service",)  # type: ignore[attr-defined]
    assert not (tmp_path / "none.sock").exists()
    assert [h.name for h in service.handler_statuses()] == []  # no containerd config: nothing declared
