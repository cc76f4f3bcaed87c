"""``GET /health``: is this deployment able to serve? Public, no auth, no request body."""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.api.dependencies import get_table_probe

health = Blueprint(__name__)

HEALTHY = {"status": "ok", "checks": {"dynamodb": "ok"}}
DEGRADED = {"status": "degraded", "checks": {"dynamodb": "unreachable"}}


@health.route("/health", methods=["GET"])
def get_health() -> Response:
    """200 when the ledger table answers a DescribeTable, 503 when it cannot be reached."""
    if get_table_probe().reachable():
        return Response(body=HEALTHY, status_code=200)
    return Response(body=DEGRADED, status_code=503)
