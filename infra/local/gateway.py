"""Chalice's local API Gateway, answering unknown routes like the deployed API does: 404 not_found.

API Gateway, and Chalice's ``LocalGateway`` that imitates it (``chalice local``,
``chalice.test.Client``), answers a path no route matches with ``403 {"message": "Missing
Authentication Token"}``, before the app (and its middleware) ever sees the request. The deployed
stages turn that into a ``404 not_found`` envelope with a gateway response
(``infra/api-gateway-responses.json``); ``NotFoundAwareGateway`` does the same locally, so the
local stack and the API tests answer exactly what clients see in a deployed stage.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from chalice.app import Chalice
from chalice.config import Config
from chalice.local import (
    CustomLocalChalice,
    LocalChalice,
    LocalGateway,
    RouteMatcher,
)

from chalicelib.api import errors, middleware
from chalicelib.api.log import logger

NO_ROUTE_MESSAGE = "No route matches this method and path."


class NotFoundAwareGateway(LocalGateway):
    """``LocalGateway`` with the deployed stages' answer to an unknown route."""

    def __init__(self, app_object: Chalice, config: Config) -> None:
        super().__init__(app_object, config)
        self._routes = RouteMatcher(list(app_object.routes))

    def handle_request(
        self, method: str, path: str, headers: dict[str, Any], body: bytes | None
    ) -> dict[str, Any]:
        try:
            self._routes.match_route(path)
        except ValueError:
            return not_found_response(method, path)
        # The app object holds the request being handled (``app.current_request``), as in Lambda
        # where a process serves one request at a time: threads sharing one app (the test
        # client's) must take turns. The local stack runs one app per worker process.
        with _ONE_REQUEST_AT_A_TIME:
            return super().handle_request(method, path, headers, body)


_ONE_REQUEST_AT_A_TIME = threading.Lock()


def not_found_response(method: str, path: str) -> dict[str, Any]:
    """The 404 envelope, with the same headers the app's middleware puts on every response."""
    request_id = str(uuid.uuid4())
    logger.info("no route", method=method, path=path.split("?")[0], request_id=request_id)
    response = errors.error_response(404, "not_found", NO_ROUTE_MESSAGE, request_id)
    return middleware.with_boundary_headers(response, request_id).to_dict()


def as_local_app(app: Chalice) -> Chalice:
    """The app with ``app.current_request`` thread-local, as ``chalice local`` makes it."""
    CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
    app.__class__ = CustomLocalChalice
    return app
