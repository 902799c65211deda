"""The containerd adapter: the only module that imports containerd's generated stubs (and grpc for them).

It speaks containerd's API v1 over its unix socket (stubs generated from containerd 1.6.20's own
.proto files by proto/generate_containerd.py) in one containerd namespace. The channel is opened
on first use, never in the constructor. Every gRPC failure leaves as a HostError whose errno
says what kind it was (ENOENT: not found, EEXIST: exists, EAGAIN: containerd unreachable, EIO:
anything else), so nothing above this module sees grpc. Plain values cross the boundary
(`Mount`, `TaskInfo`, `ContainerInfo`), never generated messages.
"""

from __future__ import annotations

import errno
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
from google.protobuf import any_pb2

from nodeagent.containerd_api.api.services.containers.v1 import containers_pb2 as containers
from nodeagent.containerd_api.api.services.containers.v1 import containers_pb2_grpc as containers_grpc
from nodeagent.containerd_api.api.services.content.v1 import content_pb2 as content
from nodeagent.containerd_api.api.services.content.v1 import content_pb2_grpc as content_grpc
from nodeagent.containerd_api.api.services.diff.v1 import diff_pb2 as diff
from nodeagent.containerd_api.api.services.diff.v1 import diff_pb2_grpc as diff_grpc
from nodeagent.containerd_api.api.services.images.v1 import images_pb2 as images
from nodeagent.containerd_api.api.services.images.v1 import images_pb2_grpc as images_grpc
from nodeagent.containerd_api.api.services.leases.v1 import leases_pb2 as leases
from nodeagent.containerd_api.api.services.leases.v1 import leases_pb2_grpc as leases_grpc
from nodeagent.containerd_api.api.services.namespaces.v1 import namespace_pb2 as namespaces
from nodeagent.containerd_api.api.services.namespaces.v1 import namespace_pb2_grpc as namespaces_grpc
from nodeagent.containerd_api.api.services.snapshots.v1 import snapshots_pb2 as snapshots
from nodeagent.containerd_api.api.services.snapshots.v1 import snapshots_pb2_grpc as snapshots_grpc
from nodeagent.containerd_api.api.services.tasks.v1 import tasks_pb2 as tasks
from nodeagent.containerd_api.api.services.tasks.v1 import tasks_pb2_grpc as tasks_grpc
from nodeagent.containerd_api.api.services.version.v1 import version_pb2_grpc as version_grpc
from nodeagent.containerd_api.api.types import descriptor_pb2, mount_pb2
from nodeagent.containerd_api.api.types.task import task_pb2
from nodeagent.containerd_api.runtime.v2.runc.options import oci_pb2
from nodeagent.errors import HostError
from nodeagent.host.ocitar import Blob, TarImage, chain_ids, open_blob

T = TypeVar("T")

SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
RUNC_OPTIONS_TYPE_URL = "containerd.runc.v1.Options"  # typeurl's name for runc v2 shim options
SNAPSHOTTER = "overlayfs"
CHAIN_LABEL = "mlsysops.eu/chain-id"  # on our image records: the snapshot of its top layer
GC_CONTENT = "containerd.io/gc.ref.content"
GC_SNAPSHOT = f"containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"
STATUS_NAMES = {0: "unknown", 1: "created", 2: "running", 3: "stopped", 4: "paused", 5: "pausing"}
CODE_ERRNO = {
    grpc.StatusCode.NOT_FOUND: errno.ENOENT,
    grpc.StatusCode.ALREADY_EXISTS: errno.EEXIST,
    grpc.StatusCode.UNAVAILABLE: errno.EAGAIN,
    grpc.StatusCode.DEADLINE_EXCEEDED: errno.ETIMEDOUT,
    grpc.StatusCode.INVALID_ARGUMENT: errno.EINVAL,
    grpc.StatusCode.FAILED_PRECONDITION: errno.EINVAL,
}


@dataclass(frozen=True)
class Mount:
    type: str
    source: str
    target: str = ""
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskInfo:
    container_id: str
    status: str  # created, running, stopped, paused, ...
    pid: int
    exit_status: int


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    image: str
    runtime: str  # shim name, e.g. io.containerd.runc.v2
    binary_name: str  # the runc-compatible binary the runc shim runs ("" for its default)
    labels: Mapping[str, str] = field(default_factory=dict)
    extensions: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageInfo:
    name: str
    digest: str  # of the manifest
    chain_id: str  # the committed snapshot of the top layer


class ContainerdClient:
    """containerd at `address` (a unix socket path), in `namespace`; opens nothing until used."""

    def __init__(self, address: str, namespace: str, timeout: float = 30.0) -> None:
        self.address = address
        self.namespace = namespace
        self.timeout = timeout
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None

    # ------------------------------------------------------------------ life cycle

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = None

    def _open(self) -> grpc.Channel:
        with self._lock:
            if self._channel is None:
                self._channel = grpc.insecure_channel(f"unix:{self.address}")
            return self._channel

    def _meta(self, lease: str = "") -> list[tuple[str, str]]:
        meta = [("containerd-namespace", self.namespace)]
        return [*meta, ("containerd-lease", lease)] if lease else meta

    def _lookup(self, key: str, call: Callable[[grpc.Channel], T]) -> T | None:
        """The reply, or None when containerd says NOT_FOUND."""
        try:
            return call(self._open())
        except grpc.RpcError as exc:
            if _code(exc) == grpc.StatusCode.NOT_FOUND:
                return None
            raise _host_error(key, exc) from None

    def _call(self, key: str, call: Callable[[grpc.Channel], T]) -> T:
        try:
            return call(self._open())
        except grpc.RpcError as exc:
            raise _host_error(key, exc) from None

    # ------------------------------------------------------------------ daemon

    def version(self) -> str:
        """containerd's version; HostError(EAGAIN) when it does not answer."""
        from google.protobuf import empty_pb2

        reply = self._call(
            "containerd/version",
            lambda ch: version_grpc.VersionStub(ch).Version(empty_pb2.Empty(), timeout=self.timeout),
        )
        return str(reply.version)

    def wait_ready(self, timeout: float) -> str:
        """containerd's version once it answers (e.g. after a restart); HostError after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.version()
            except HostError as exc:
                if exc.errno not in (errno.EAGAIN, errno.ETIMEDOUT) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def ensure_namespace(self) -> None:
        def create(ch: grpc.Channel) -> None:
            stub = namespaces_grpc.NamespacesStub(ch)
            try:
                stub.Get(namespaces.GetNamespaceRequest(name=self.namespace), timeout=self.timeout)
            except grpc.RpcError as exc:
                if _code(exc) != grpc.StatusCode.NOT_FOUND:
                    raise
                request = namespaces.CreateNamespaceRequest(
                    namespace=namespaces.Namespace(name=self.namespace)
                )
                stub.Create(request, timeout=self.timeout)

        self._call(f"namespace/{self.namespace}", create)

    # ------------------------------------------------------------------ images

    def image(self, name: str) -> ImageInfo | None:
        """The image `name` as imported by import_image (None when containerd does not have it)."""
        request = images.GetImageRequest(name=name)
        reply = self._lookup(
            f"image/{name}",
            lambda ch: images_grpc.ImagesStub(ch).Get(request, metadata=self._meta(), timeout=self.timeout),
        )
        if reply is None:
            return None
        return ImageInfo(reply.image.name, reply.image.target.digest, reply.image.labels.get(CHAIN_LABEL, ""))

    def import_image(self, image: TarImage, name: str) -> ImageInfo:
        """Write the tarball's blobs to the content store, unpack its layers into snapshots and
        record the image as `name`; all under a lease, so the garbage collector cannot take a
        half-imported image, and nothing of a failed import stays behind once it is dropped."""
        lease = self._call("lease", lambda ch: self._create_lease(ch))
        try:
            for blob in image.blobs():
                labels = _gc_labels(image) if blob is image.manifest else {}
                self._write_blob(image, blob, labels, lease)
            chain = self._unpack(image, lease)
            self._label_content(image.config.digest, {GC_SNAPSHOT: chain}, lease)
            record = images.Image(
                name=name,
                labels={CHAIN_LABEL: chain},
                target=descriptor_pb2.Descriptor(
                    media_type=image.manifest.media_type,
                    digest=image.manifest.digest,
                    size=image.manifest.size,
                ),
            )
            self._call(f"image/{name}", lambda ch: self._put_image(ch, record, lease))
        finally:
            self._call(
                "lease",
                lambda ch: leases_grpc.LeasesStub(ch).Delete(
                    leases.DeleteRequest(id=lease), metadata=self._meta(), timeout=self.timeout
                ),
            )
        return ImageInfo(name, image.manifest.digest, chain)

    def _create_lease(self, ch: grpc.Channel) -> str:
        request = leases.CreateRequest(
            id=f"mlsysops-import-{uuid.uuid4().hex[:12]}",
            labels={"containerd.io/gc.expire": _expire_in(3600)},
        )
        reply = leases_grpc.LeasesStub(ch).Create(request, metadata=self._meta(), timeout=self.timeout)
        return str(reply.lease.id)

    def _put_image(self, ch: grpc.Channel, record: images.Image, lease: str) -> None:
        stub = images_grpc.ImagesStub(ch)
        try:
            stub.Create(
                images.CreateImageRequest(image=record), metadata=self._meta(lease), timeout=self.timeout
            )
        except grpc.RpcError as exc:
            if _code(exc) != grpc.StatusCode.ALREADY_EXISTS:
                raise
            stub.Update(
                images.UpdateImageRequest(image=record), metadata=self._meta(lease), timeout=self.timeout
            )

    def _write_blob(self, image: TarImage, blob: Blob, labels: Mapping[str, str], lease: str) -> None:
        """Stream one blob into the content store (skipped when it is there; labelled either way)."""
        digest, size = blob.digest, blob.size
        stub = content_grpc.ContentStub(self._open())
        try:
            stub.Info(content.InfoRequest(digest=digest), metadata=self._meta(lease), timeout=self.timeout)
            if labels:
                self._label_content(digest, labels, lease)
            return  # already there: the lease now references it
        except grpc.RpcError as exc:
            if _code(exc) != grpc.StatusCode.NOT_FOUND:
                raise _host_error(f"content/{digest}", exc) from None

        def requests() -> Iterator[content.WriteContentRequest]:
            offset = 0
            ref = f"mlsysops-{digest[7:]}"
            for chunk in open_blob(image, blob):
                yield content.WriteContentRequest(
                    action=content.WRITE, ref=ref, total=size, expected=digest, offset=offset, data=chunk
                )
                offset += len(chunk)
            yield content.WriteContentRequest(
                action=content.COMMIT,
                ref=ref,
                total=size,
                expected=digest,
                offset=offset,
                labels=dict(labels),
            )

        try:
            for _ in stub.Write(requests(), metadata=self._meta(lease), timeout=self.timeout * 10):
                pass
        except grpc.RpcError as exc:
            if _code(exc) != grpc.StatusCode.ALREADY_EXISTS:
                raise _host_error(f"content/{digest}", exc) from None

    def _label_content(self, digest: str, labels: Mapping[str, str], lease: str) -> None:
        from google.protobuf import field_mask_pb2

        paths = [f"labels.{k}" for k in labels]
        request = content.UpdateRequest(
            info=content.Info(digest=digest, labels=dict(labels)),
            update_mask=field_mask_pb2.FieldMask(paths=paths),
        )
        self._call(
            f"content/{digest}",
            lambda ch: content_grpc.ContentStub(ch).Update(
                request, metadata=self._meta(lease), timeout=self.timeout
            ),
        )

    def _unpack(self, image: TarImage, lease: str) -> str:
        """Apply each layer onto its parent's snapshot; returns the top layer's chain id."""
        parent = ""
        for layer, chain in zip(image.layers, chain_ids(image.diff_ids), strict=True):
            if not self._snapshot_exists(chain):
                self._apply_layer(layer, chain, parent, lease)
            parent = chain
        return parent

    def _apply_layer(self, layer: Blob, chain: str, parent: str, lease: str) -> None:
        """Prepare an active snapshot on `parent`, apply the layer's diff into it, commit it as `chain`."""
        key = f"extract-{uuid.uuid4().hex[:12]} {chain}"
        meta = self._meta(lease)

        def unpack(ch: grpc.Channel) -> None:
            stub = snapshots_grpc.SnapshotsStub(ch)
            prepare = snapshots.PrepareSnapshotRequest(snapshotter=SNAPSHOTTER, key=key, parent=parent)
            mounts = stub.Prepare(prepare, metadata=meta, timeout=self.timeout).mounts
            try:
                target = descriptor_pb2.Descriptor(
                    media_type=layer.media_type, digest=layer.digest, size=layer.size
                )
                request = diff.ApplyRequest(diff=target, mounts=list(mounts))
                diff_grpc.DiffStub(ch).Apply(request, metadata=meta, timeout=self.timeout * 10)
                commit = snapshots.CommitSnapshotRequest(snapshotter=SNAPSHOTTER, name=chain, key=key)
                stub.Commit(commit, metadata=meta, timeout=self.timeout)
            except BaseException:
                self.remove_snapshot(key)
                raise

        self._call(f"snapshot/{chain}", unpack)

    def _snapshot_exists(self, key: str) -> bool:
        request = snapshots.StatSnapshotRequest(snapshotter=SNAPSHOTTER, key=key)
        reply = self._lookup(
            f"snapshot/{key}",
            lambda ch: snapshots_grpc.SnapshotsStub(ch).Stat(
                request, metadata=self._meta(), timeout=self.timeout
            ),
        )
        return reply is not None

    # ------------------------------------------------------------------ snapshots

    def prepare_snapshot(self, key: str, parent: str) -> list[Mount]:
        request = snapshots.PrepareSnapshotRequest(snapshotter=SNAPSHOTTER, key=key, parent=parent)
        reply = self._call(
            f"snapshot/{key}",
            lambda ch: snapshots_grpc.SnapshotsStub(ch).Prepare(
                request, metadata=self._meta(), timeout=self.timeout
            ),
        )
        return [Mount(m.type, m.source, m.target, tuple(m.options)) for m in reply.mounts]

    def snapshot_mounts(self, key: str) -> list[Mount] | None:
        request = snapshots.MountsRequest(snapshotter=SNAPSHOTTER, key=key)
        reply = self._lookup(
            f"snapshot/{key}",
            lambda ch: snapshots_grpc.SnapshotsStub(ch).Mounts(
                request, metadata=self._meta(), timeout=self.timeout
            ),
        )
        return (
            None
            if reply is None
            else [Mount(m.type, m.source, m.target, tuple(m.options)) for m in reply.mounts]
        )

    def remove_snapshot(self, key: str) -> None:
        """Idempotent: a snapshot that is not there is fine."""
        request = snapshots.RemoveSnapshotRequest(snapshotter=SNAPSHOTTER, key=key)
        self._ignore_missing(
            f"snapshot/{key}",
            lambda ch: snapshots_grpc.SnapshotsStub(ch).Remove(
                request, metadata=self._meta(), timeout=self.timeout
            ),
        )

    def snapshot_keys(self) -> list[str]:
        request = snapshots.ListSnapshotsRequest(snapshotter=SNAPSHOTTER)
        return self._call(
            "snapshots",
            lambda ch: [
                info.name
                for reply in snapshots_grpc.SnapshotsStub(ch).List(
                    request, metadata=self._meta(), timeout=self.timeout
                )
                for info in reply.info
            ],
        )

    # ------------------------------------------------------------------ containers

    def create_container(
        self,
        container_id: str,
        *,
        image: str,
        spec_json: bytes,
        runtime: str,
        binary_name: str,
        labels: Mapping[str, str],
        extensions: Mapping[str, bytes],
    ) -> None:
        options = None
        if binary_name:
            options = any_pb2.Any(
                type_url=RUNC_OPTIONS_TYPE_URL,
                value=oci_pb2.Options(binary_name=binary_name).SerializeToString(),
            )
        record = containers.Container(
            id=container_id,
            labels=dict(labels),
            image=image,
            runtime=containers.Container.Runtime(name=runtime, options=options),
            spec=any_pb2.Any(type_url=SPEC_TYPE_URL, value=spec_json),
            snapshotter=SNAPSHOTTER,
            snapshot_key=container_id,
            extensions={k: any_pb2.Any(type_url=f"mlsysops.eu/{k}", value=v) for k, v in extensions.items()},
        )
        self._call(
            f"container/{container_id}",
            lambda ch: containers_grpc.ContainersStub(ch).Create(
                containers.CreateContainerRequest(container=record),
                metadata=self._meta(),
                timeout=self.timeout,
            ),
        )

    def containers(self, label: str = "") -> list[ContainerInfo]:
        """Containers of our namespace, those carrying `label` when given."""
        filters = [f"labels.{label!r}"] if label else []
        request = containers.ListContainersRequest(filters=[f.replace("'", '"') for f in filters])
        reply = self._call(
            "containers",
            lambda ch: containers_grpc.ContainersStub(ch).List(
                request, metadata=self._meta(), timeout=self.timeout
            ),
        )
        return [_container_info(c) for c in reply.containers]

    def container(self, container_id: str) -> ContainerInfo | None:
        request = containers.GetContainerRequest(id=container_id)
        reply = self._lookup(
            f"container/{container_id}",
            lambda ch: containers_grpc.ContainersStub(ch).Get(
                request, metadata=self._meta(), timeout=self.timeout
            ),
        )
        return None if reply is None else _container_info(reply.container)

    def delete_container(self, container_id: str) -> None:
        """Idempotent."""
        request = containers.DeleteContainerRequest(id=container_id)
        self._ignore_missing(
            f"container/{container_id}",
            lambda ch: containers_grpc.ContainersStub(ch).Delete(
                request, metadata=self._meta(), timeout=self.timeout
            ),
        )

    # ------------------------------------------------------------------ tasks

    def create_task(self, container_id: str, rootfs: Sequence[Mount], log_path: str) -> int:
        """Create the task (its process exists, not started); stdout and stderr append to log_path."""
        request = tasks.CreateTaskRequest(
            container_id=container_id,
            rootfs=[
                mount_pb2.Mount(type=m.type, source=m.source, target=m.target, options=list(m.options))
                for m in rootfs
            ],
            stdout=f"file://{log_path}",
            stderr=f"file://{log_path}",
        )
        reply = self._call(
            f"task/{container_id}",
            lambda ch: tasks_grpc.TasksStub(ch).Create(request, metadata=self._meta(), timeout=self.timeout),
        )
        return int(reply.pid)

    def start_task(self, container_id: str) -> int:
        reply = self._call(
            f"task/{container_id}",
            lambda ch: tasks_grpc.TasksStub(ch).Start(
                tasks.StartRequest(container_id=container_id), metadata=self._meta(), timeout=self.timeout
            ),
        )
        return int(reply.pid)

    def task(self, container_id: str) -> TaskInfo | None:
        request = tasks.GetRequest(container_id=container_id)
        reply = self._lookup(
            f"task/{container_id}",
            lambda ch: tasks_grpc.TasksStub(ch).Get(request, metadata=self._meta(), timeout=self.timeout),
        )
        return None if reply is None else _task_info(reply.process)

    def tasks(self) -> list[TaskInfo]:
        reply = self._call(
            "tasks",
            lambda ch: tasks_grpc.TasksStub(ch).List(
                tasks.ListTasksRequest(), metadata=self._meta(), timeout=self.timeout
            ),
        )
        return [_task_info(p) for p in reply.tasks]

    def kill(self, container_id: str, signal: int, *, all_processes: bool = True) -> None:
        """Idempotent: a task that is gone, or already stopped, is fine."""
        request = tasks.KillRequest(container_id=container_id, signal=signal, all=all_processes)
        self._ignore_missing(
            f"task/{container_id}",
            lambda ch: tasks_grpc.TasksStub(ch).Kill(request, metadata=self._meta(), timeout=self.timeout),
        )

    def delete_task(self, container_id: str) -> None:
        """Idempotent. The task must have stopped (kill, then wait for it)."""
        request = tasks.DeleteTaskRequest(container_id=container_id)
        self._ignore_missing(
            f"task/{container_id}",
            lambda ch: tasks_grpc.TasksStub(ch).Delete(request, metadata=self._meta(), timeout=self.timeout),
        )

    def run_exec(
        self, container_id: str, exec_id: str, process: bytes, log_path: str, timeout: float
    ) -> int | None:
        """Run one more process (OCI process JSON) in the task; its exit status, None when it did
        not exit within `timeout` (it is then killed). The process is deleted either way."""
        key = f"task/{container_id}/exec/{exec_id}"
        meta = self._meta()
        spec = any_pb2.Any(type_url=PROCESS_TYPE_URL, value=process)
        request = tasks.ExecProcessRequest(
            container_id=container_id,
            exec_id=exec_id,
            spec=spec,
            stdout=f"file://{log_path}",
            stderr=f"file://{log_path}",
        )

        def run(ch: grpc.Channel) -> int | None:
            stub = tasks_grpc.TasksStub(ch)
            stub.Exec(request, metadata=meta, timeout=self.timeout)
            try:
                stub.Start(
                    tasks.StartRequest(container_id=container_id, exec_id=exec_id),
                    metadata=meta,
                    timeout=self.timeout,
                )
                wait = tasks.WaitRequest(container_id=container_id, exec_id=exec_id)
                try:
                    return int(stub.Wait(wait, metadata=meta, timeout=timeout).exit_status)
                except grpc.RpcError as exc:
                    if _code(exc) != grpc.StatusCode.DEADLINE_EXCEEDED:
                        raise
                    kill = tasks.KillRequest(container_id=container_id, exec_id=exec_id, signal=9)
                    stub.Kill(kill, metadata=meta, timeout=self.timeout)
                    stub.Wait(wait, metadata=meta, timeout=self.timeout)
                    return None
            finally:
                delete = tasks.DeleteProcessRequest(container_id=container_id, exec_id=exec_id)
                self._lookup(
                    key,
                    lambda c: tasks_grpc.TasksStub(c).DeleteProcess(
                        delete, metadata=meta, timeout=self.timeout
                    ),
                )

        return self._call(key, run)

    def _ignore_missing(self, key: str, call: Callable[[grpc.Channel], object]) -> None:
        """Deletes are idempotent: NOT_FOUND means done."""
        self._lookup(key, call)


# ---------------------------------------------------------------- helpers


def _code(exc: grpc.RpcError) -> grpc.StatusCode:
    code = getattr(exc, "code", None)
    return code() if callable(code) else grpc.StatusCode.UNKNOWN


def _host_error(key: str, exc: grpc.RpcError) -> HostError:
    code = _code(exc)
    details = getattr(exc, "details", None)
    text = details() if callable(details) else str(exc)
    return HostError(key, f"containerd: {text or code.name.lower()}", CODE_ERRNO.get(code, errno.EIO))


def _task_info(process: task_pb2.Process) -> TaskInfo:
    return TaskInfo(
        process.container_id or process.id,
        STATUS_NAMES.get(int(process.status), "unknown"),
        int(process.pid),
        int(process.exit_status),
    )


def _container_info(record: containers.Container) -> ContainerInfo:
    binary = ""
    if record.runtime.options.type_url == RUNC_OPTIONS_TYPE_URL:
        options = oci_pb2.Options()
        options.ParseFromString(record.runtime.options.value)
        binary = options.binary_name
    return ContainerInfo(
        id=record.id,
        image=record.image,
        runtime=record.runtime.name,
        binary_name=binary,
        labels=dict(record.labels),
        extensions={k: bytes(v.value) for k, v in record.extensions.items()},
    )


def _gc_labels(image: TarImage) -> dict[str, str]:
    """The manifest keeps its config and layers alive once the import lease is gone."""
    labels = {f"{GC_CONTENT}.config": image.config.digest}
    labels.update({f"{GC_CONTENT}.l.{i}": layer.digest for i, layer in enumerate(image.layers)})
    return labels


def _expire_in(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))
