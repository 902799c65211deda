"""The CLI's remote mode for the controller's groups: the AppStore's methods over the REST API.

The HTTP client itself is the shared kernel's (mlsysops.restapi), which the bridge's `devices`
group uses too.
"""

from __future__ import annotations

from typing import Any

from mlsysops.restapi import RestClient as RemoteApi
from mlsysops.restapi import RestError as RemoteError

__all__ = ["RemoteApi", "RemoteError", "RemoteStore"]


class RemoteStore:
    """The CLI's AppStore (controller.kube.store) over the REST API: `mlsysops apps|nodes|clusters
    ... --api URL` run the same commands against a remote API instead of an API server."""

    def __init__(self, api: RemoteApi) -> None:
        self.api = api

    def apply_app(self, doc: dict[str, Any]) -> dict[str, Any]:
        name = (doc.get("metadata") or {}).get("name")
        self.api.put(f"/api/v1/apps/{name}", doc)
        return self.get_app(str(name))

    def list_apps(self) -> list[dict[str, Any]]:
        apps: list[dict[str, Any]] = self.api.get("/api/v1/apps", full="true")
        return apps

    def get_app(self, name: str) -> dict[str, Any]:
        app: dict[str, Any] = self.api.get(f"/api/v1/apps/{name}")
        return app

    def delete_app(self, name: str) -> None:
        self.api.delete(f"/api/v1/apps/{name}")

    def list_nodes(self) -> list[dict[str, Any]]:
        return [n["description"] for n in self.api.get("/api/v1/nodes")]

    def list_clusters(self) -> list[dict[str, Any]]:
        return [c["description"] for c in self.api.get("/api/v1/clusters")]
