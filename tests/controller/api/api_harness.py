"""Paths and helpers shared by the REST API tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
STANDIN = HERE.parents[0] / "standin"
FIXTURES = HERE.parents[0] / "fixtures"
DATA = HERE.parents[0] / "integration" / "data"


def reference_app() -> dict[str, Any]:
    """The reference framework's example description (wrapper form), as its CLI sends it."""
    doc: dict[str, Any] = yaml.safe_load((FIXTURES / "reference_app.yaml").read_text())
    return doc


def yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


class LiveApi:
    """The app served by a real uvicorn on a free loopback port, in a thread (for what a
    TestClient cannot show: the client's address, streaming, TLS, the CLI over HTTP)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", **options: Any) -> None:
        import socket

        import uvicorn

        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, 0))
            self.port = s.getsockname()[1]
        self.host = host
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=self.port, log_level="warning", **options)
        )
        self.thread: Any = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.server.config.ssl_certfile else "http"
        return f"{scheme}://{host}:{self.port}"

    def __enter__(self) -> LiveApi:
        import threading
        import time

        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
