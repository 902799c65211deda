"""AppStore: the MLSysOps descriptions in an object store (API server or embedded), as the CLI sees them.

`mlsysops apps deploy|list|status|delete`, `nodes list` and `clusters list` go through here.
Apps are written with server-side apply under the CLI's own field manager, so a redeploy
changes only what the user changed and never fights the controller over `status`.
"""

from __future__ import annotations

import copy
from typing import Any

from kubernetes import client

from controller.kube import resources
from controller.kube.api import KubeApi
from controller.kube.errors import NotFound
from controller.kube.objectapi import ObjectApi

CLI_FIELD_MANAGER = "mlsysops-cli"


class AppStore:
    """The CLI's view of one namespace, over any ObjectApi (an ApiClient is wrapped in a KubeApi;
    the embedded store is passed as it is)."""

    def __init__(self, api: ObjectApi | client.ApiClient, namespace: str) -> None:
        self.api: ObjectApi = KubeApi(api) if isinstance(api, client.ApiClient) else api
        self.namespace = namespace

    def apply_app(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Create or update an MLSysOpsApp (Kubernetes form); returns the stored object."""
        body = copy.deepcopy(dict(doc))
        body.pop("status", None)
        meta = body.setdefault("metadata", {})
        meta["namespace"] = meta.get("namespace") or self.namespace
        for server_set in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
            meta.pop(server_set, None)
        return self.api.apply(body, field_manager=CLI_FIELD_MANAGER, force=True)

    def list_apps(self) -> list[dict[str, Any]]:
        return self.api.list(resources.APP, self.namespace)[0]

    def get_app(self, name: str) -> dict[str, Any]:
        """Raises controller.kube.errors.NotFound when there is no such app."""
        return self.api.get(resources.APP, self.namespace, name)

    def delete_app(self, name: str) -> None:
        """Delete the app; the garbage collector removes what the controller created for it
        (owner references). Raises NotFound when there is no such app."""
        if not self.api.delete(resources.APP, self.namespace, name):
            raise NotFound(f'mlsysopsapps.mlsysops.eu "{name}" not found', 404, "NotFound")

    def list_nodes(self) -> list[dict[str, Any]]:
        return self.api.list(resources.NODE, self.namespace)[0]

    def list_clusters(self) -> list[dict[str, Any]]:
        return self.api.list(resources.CLUSTER, self.namespace)[0]
