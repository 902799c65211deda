"""The committed OpenAPI document is the one the code generates, and it is valid OpenAPI."""

from __future__ import annotations

import json
from pathlib import Path

from openapi_spec_validator import validate

from controller.api.openapi import document, render

COMMITTED = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def test_the_committed_document_is_in_sync_with_the_routes():
    assert COMMITTED.read_text() == render(), "routes changed: run python -m controller.api.openapi"


def test_the_document_is_valid_openapi():
    validate(json.loads(COMMITTED.read_text()))


def test_every_route_declares_bearer_security_and_the_reference_table_is_there():
    doc = document()
    paths = doc["paths"]
    for path in (
        "/apps/deploy",
        "/apps/list_all/",
        "/apps/status/{app_id}",
        "/apps/apps/details/{app_id}",
        "/apps/performance/{app_id}",
        "/apps/remove/{app_id}",
        "/infra/list/",
        "/ml/deploy_ml",
        "/ml/list_all/",
        "/ml/status/{model_uid}",
        "/ml/remove/{model_uid}",
        "/manage/ping",
        "/manage/mode/{mode}",
        "/api/v1/apps",
        "/api/v1/apps/{name}/status",
        "/api/v1/events",
        "/api/v1/models",
        "/api/v1/models/{name}",
        "/api/v1/models/{name}/train",
        "/api/v1/models/{name}/promote",
        "/api/v1/models/{name}/rollback",
        "/api/v1/models/{name}/explain",
    ):
        assert path in paths, path
    for path, operations in paths.items():
        for method, op in operations.items():
            assert op.get("security") == [{"HTTPBearer": []}], (
                f"{method.upper()} {path} has no bearer security"
            )
