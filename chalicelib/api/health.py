"""``GET /health``: is this deployment able to serve? ``GET /openapi.json``: the API's OpenAPI
document, built from the app's route table (chalicelib/api/openapi_spec.py). Public, no auth."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib.api import responses
from chalicelib.api.dependencies import get_table_probe

health = Blueprint(__name__)

HEALTHY = responses.Health(status="ok", checks={"dynamodb": "ok"}).body()
DEGRADED = responses.Health(status="degraded", checks={"dynamodb": "unreachable"}).body()


@health.route("/health", methods=["GET"])
def get_health() -> Response:
    """200 when the ledger table answers a DescribeTable, 503 when it cannot be reached."""
    if get_table_probe().reachable():
        return Response(body=HEALTHY, status_code=200)
    return Response(body=DEGRADED, status_code=503)


_document: dict[str, Any] = {}


@health.route("/openapi.json", methods=["GET"])
def get_openapi() -> dict[str, Any]:
    """Built on the first call (pydantic's schema generation is not cold-start work), then kept."""
    if not _document:
        from chalicelib.api import openapi_spec

        _document.update(openapi_spec.document(health.current_app.routes))
    return _document
