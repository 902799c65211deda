"""The kinds the controller reads and writes, as data: group, version, plural, scope.

A real kubectl learns this from discovery; the controller only handles its own fixed set, so a
table keeps every request path explicit (and a typo in a kind fails loudly here, not as a 404).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str = "", name: str = "", subresource: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


CRD_GROUP, CRD_VERSION = "mlsysops.eu", "v1"

SERVICE = Resource("", "v1", "services", "Service")
DEPLOYMENT = Resource("apps", "v1", "deployments", "Deployment")
JOB = Resource("batch", "v1", "jobs", "Job")
RUNTIME_CLASS = Resource("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", namespaced=False)
APP = Resource(CRD_GROUP, CRD_VERSION, "mlsysopsapps", "MLSysOpsApp")
NODE = Resource(CRD_GROUP, CRD_VERSION, "mlsysopsnodes", "MLSysOpsNode")
CLUSTER = Resource(CRD_GROUP, CRD_VERSION, "mlsysopsclusters", "MLSysOpsCluster")
CONTINUUM = Resource(CRD_GROUP, CRD_VERSION, "mlsysopscontinuums", "MLSysOpsContinuum")
PROPAGATION_POLICY = Resource("policy.karmada.io", "v1alpha1", "propagationpolicies", "PropagationPolicy")
OVERRIDE_POLICY = Resource("policy.karmada.io", "v1alpha1", "overridepolicies", "OverridePolicy")
CLUSTER_PROPAGATION_POLICY = Resource("policy.karmada.io", "v1alpha1", "clusterpropagationpolicies",
                                      "ClusterPropagationPolicy", namespaced=False)
LEASE = Resource("coordination.k8s.io", "v1", "leases", "Lease")  # leader election

ALL: tuple[Resource, ...] = (SERVICE, DEPLOYMENT, JOB, RUNTIME_CLASS, APP, NODE, CLUSTER, CONTINUUM,
                             PROPAGATION_POLICY, OVERRIDE_POLICY, CLUSTER_PROPAGATION_POLICY, LEASE)
_BY_KIND = {(r.api_version, r.kind): r for r in ALL}


def resource_for(obj: Mapping[str, Any]) -> Resource:
    """The table row of an object; ValueError naming apiVersion/kind when unknown."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    try:
        return _BY_KIND[key]  # type: ignore[index]
    except KeyError:
        known = ", ".join(f"{a}/{k}" for a, k in _BY_KIND)
        raise ValueError(f"apiVersion/kind {key[0]}/{key[1]}: not a kind the controller writes "
                         f"(expected one of {known})") from None
