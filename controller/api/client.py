"""The client of the REST API for the CLI's remote mode (`--api URL`).

The token comes from MLSYSOPS_API_TOKEN, else from the client config file
(~/.config/mlsysops/api.yaml, or MLSYSOPS_API_CONFIG: `token: ...`, optionally `url: ...` and
`ca: PATH` to verify a private CA's server certificate). Failures are one error type,
RemoteError, carrying the HTTP status and the API's `detail` (which names the bad field).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import yaml

DEFAULT_CONFIG = Path("~/.config/mlsysops/api.yaml")


class RemoteError(Exception):
    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def client_config() -> dict[str, Any]:
    path = Path(os.environ.get("MLSYSOPS_API_CONFIG") or DEFAULT_CONFIG).expanduser()
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise RemoteError(f"{path}: expected a mapping (token, url, ca)")
    return data


class RemoteApi:
    def __init__(self, url: str, token: str | None = None, timeout_s: float = 30.0) -> None:
        config = client_config()
        self.url = url.rstrip("/")
        self.token = token or os.environ.get("MLSYSOPS_API_TOKEN") or config.get("token")
        self.verify: Any = config.get("ca") or True
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = httpx.request(
                method,
                self.url + path,
                json=body,
                params=params,
                headers=headers,
                timeout=self.timeout_s,
                verify=self.verify,
            )
        except httpx.HTTPError as exc:
            raise RemoteError(f"API {self.url}: {exc}") from None
        try:
            data = response.json()
        except ValueError:
            data = {"detail": response.text}
        if response.status_code >= 400:
            detail = data.get("detail") if isinstance(data, dict) else data
            raise RemoteError(
                f"API {self.url} answered {response.status_code}: {detail}", response.status_code
            )
        return data

    def get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params={k: v for k, v in params.items() if v is not None} or None)

    def post(self, path: str, body: Any) -> Any:
        return self.call("POST", path, body)

    def put(self, path: str, body: Any) -> Any:
        return self.call("PUT", path, body)

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)


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
