"""The Kubernetes objects the controller writes, as types: what the renderers return.

Only the fields the controller sets are declared (a subset of the API's), so mypy checks every
rendered field name and value type; at run time they are plain dicts, ready for server-side
apply. Objects read back from the API server stay `controller.kube.api.Obj`: the server adds
whatever it likes (status, managedFields), so they are read defensively, not typed.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict


class OwnerReference(TypedDict):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool
    blockOwnerDeletion: bool


class ObjectMeta(TypedDict):
    name: str
    labels: dict[str, str]
    namespace: NotRequired[str]
    annotations: NotRequired[dict[str, str]]
    ownerReferences: NotRequired[list[OwnerReference]]


class TemplateMeta(TypedDict):
    labels: dict[str, str]


# ---------------------------------------------------------------------- containers


class ContainerPort(TypedDict):
    containerPort: int
    protocol: str
    name: NotRequired[str]
    hostPort: NotRequired[int]
    hostIP: NotRequired[str]


class FieldRef(TypedDict):
    fieldPath: str


class EnvSource(TypedDict):
    fieldRef: FieldRef


class EnvVar(TypedDict):
    name: str
    value: NotRequired[str]
    valueFrom: NotRequired[EnvSource]


class ResourceRequirements(TypedDict, total=False):
    requests: dict[str, str]
    limits: dict[str, str]


class Container(TypedDict):
    name: str
    image: str
    command: NotRequired[list[str]]
    imagePullPolicy: NotRequired[str]
    ports: NotRequired[list[ContainerPort]]
    env: NotRequired[list[EnvVar]]
    resources: NotRequired[ResourceRequirements]


# ---------------------------------------------------------------------- pods


class FieldRequirement(TypedDict):
    key: str
    operator: str
    values: list[str]


class NodeSelectorTerm(TypedDict):
    matchFields: list[FieldRequirement]


class NodeSelector(TypedDict):
    nodeSelectorTerms: list[NodeSelectorTerm]


class NodeAffinity(TypedDict):
    requiredDuringSchedulingIgnoredDuringExecution: NodeSelector


class Affinity(TypedDict):
    nodeAffinity: NodeAffinity


class PodSpec(TypedDict):
    containers: list[Container]
    restartPolicy: str
    nodeName: NotRequired[str]
    affinity: NotRequired[Affinity]
    runtimeClassName: NotRequired[str]
    hostNetwork: NotRequired[bool]


class PodTemplate(TypedDict):
    spec: PodSpec
    metadata: NotRequired[TemplateMeta]


# ---------------------------------------------------------------------- workloads, services, runtime classes


class LabelSelector(TypedDict):
    matchLabels: dict[str, str]


class DeploymentSpec(TypedDict):
    replicas: int
    selector: LabelSelector
    template: PodTemplate


class Deployment(TypedDict):
    apiVersion: Literal["apps/v1"]
    kind: Literal["Deployment"]
    metadata: ObjectMeta
    spec: DeploymentSpec


class JobSpec(TypedDict):
    parallelism: int
    completions: int
    template: PodTemplate


class Job(TypedDict):
    apiVersion: Literal["batch/v1"]
    kind: Literal["Job"]
    metadata: ObjectMeta
    spec: JobSpec


class ServicePort(TypedDict):
    name: str
    port: int
    targetPort: int
    protocol: str


class ServiceSpec(TypedDict):
    selector: dict[str, str]
    ports: NotRequired[list[ServicePort]]
    type: NotRequired[str]
    clusterIP: NotRequired[str]


class Service(TypedDict):
    apiVersion: Literal["v1"]
    kind: Literal["Service"]
    metadata: ObjectMeta
    spec: ServiceSpec


class RuntimeClass(TypedDict):
    apiVersion: Literal["node.k8s.io/v1"]
    kind: Literal["RuntimeClass"]
    metadata: ObjectMeta
    handler: str


# ---------------------------------------------------------------------- Karmada policies (policy.karmada.io)


class ResourceSelector(TypedDict):
    apiVersion: str
    kind: str
    name: str
    namespace: NotRequired[str]  # not for cluster-scoped kinds


class ClusterAffinity(TypedDict):
    clusterNames: list[str]


class ReplicaScheduling(TypedDict):
    replicaSchedulingType: str


class Placement(TypedDict):
    clusterAffinity: ClusterAffinity
    replicaScheduling: ReplicaScheduling


class PropagationSpec(TypedDict):
    resourceSelectors: list[ResourceSelector]
    placement: Placement


class PropagationPolicy(TypedDict):
    apiVersion: Literal["policy.karmada.io/v1alpha1"]
    kind: Literal["PropagationPolicy"]
    metadata: ObjectMeta
    spec: PropagationSpec


class PlaintextOverrider(TypedDict):
    path: str
    operator: str
    value: int | bool


class Overriders(TypedDict):
    plaintext: list[PlaintextOverrider]


class OverrideRule(TypedDict):
    targetCluster: ClusterAffinity
    overriders: Overriders


class OverrideSpec(TypedDict):
    resourceSelectors: list[ResourceSelector]
    overrideRules: list[OverrideRule]


class OverridePolicy(TypedDict):
    apiVersion: Literal["policy.karmada.io/v1alpha1"]
    kind: Literal["OverridePolicy"]
    metadata: ObjectMeta
    spec: OverrideSpec


class ClusterPropagationPolicy(TypedDict):
    """Cluster-scoped: propagates cluster-scoped templates (RuntimeClasses)."""

    apiVersion: Literal["policy.karmada.io/v1alpha1"]
    kind: Literal["ClusterPropagationPolicy"]
    metadata: ObjectMeta
    spec: PropagationSpec


Workload = Deployment | Job
Rendered = RuntimeClass | Deployment | Job | Service  # what the kubernetes mechanism writes
KarmadaPolicy = PropagationPolicy | OverridePolicy | ClusterPropagationPolicy
