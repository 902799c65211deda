"""The one client of the northbound REST API (controller.api), for every CLI group's `--api URL`.

`mlsysops apps|nodes|clusters ... --api URL` (the controller's groups) and `mlsysops devices ...
--api URL` (the bridge's group) reach the same API, so its client lives here, in the shared
kernel, with one error type: RestError, carrying the HTTP status and the API's `detail` (which
names the bad field). Standard library only (urllib), so no role pays a dependency for it.

The token comes from the caller, else MLSYSOPS_API_TOKEN, else the client config file
(~/.config/mlsysops/api.yaml, or MLSYSOPS_API_CONFIG): `token: ...`, and `ca: PATH` to verify a
private CA's server certificate.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG = Path("~/.config/mlsysops/api.yaml")
MAX_ANSWER = 64 << 20


class RestError(Exception):
    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def client_config() -> dict[str, Any]:
    path = Path(os.environ.get("MLSYSOPS_API_CONFIG") or DEFAULT_CONFIG).expanduser()
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise RestError(f"{path}: expected a mapping (token, ca)")
    return data


class RestClient:
    def __init__(self, url: str, token: str | None = None, timeout_s: float = 30.0) -> None:
        config = client_config()
        self.url = url.rstrip("/")
        self.token = token or os.environ.get("MLSYSOPS_API_TOKEN") or config.get("token")
        self.timeout_s = timeout_s
        ca = config.get("ca")
        self._tls = ssl.create_default_context(cafile=str(ca) if ca else None)

    def call(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path + query, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self._tls) as response:
                return _json(response.read(MAX_ANSWER))
        except urllib.error.HTTPError as exc:
            answer = _json(exc.read(MAX_ANSWER))
            detail = answer.get("detail") if isinstance(answer, dict) else answer
            raise RestError(f"API {self.url} answered {exc.code}: {detail}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RestError(f"API {self.url}: {reason}") from None

    def get(self, path: str, **params: str) -> Any:
        return self.call("GET", path, params=params or None)

    def post(self, path: str, body: Any) -> Any:
        return self.call("POST", path, body)

    def put(self, path: str, body: Any) -> Any:
        return self.call("PUT", path, body)

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {"detail": raw.decode(errors="replace")[:500]}
