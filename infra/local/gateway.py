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
from http.server import BaseHTTPRequestHandler
from typing import Any

from chalice.app import Chalice
from chalice.config import Config
from chalice.local import (
    ChaliceRequestHandler,
    CustomLocalChalice,
    LocalChalice,
    LocalDevServer,
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
        # where a process serves one request at a time; the dev server's threads must take turns.
        with _ONE_REQUEST_AT_A_TIME:
            return super().handle_request(method, path, headers, body)


_ONE_REQUEST_AT_A_TIME = threading.Lock()


def not_found_response(method: str, path: str) -> dict[str, Any]:
    """The 404 envelope, with the same headers the app's middleware puts on every response."""
    request_id = str(uuid.uuid4())
    logger.info("no route", method=method, path=path.split("?")[0], request_id=request_id)
    response = errors.error_response(404, "not_found", NO_ROUTE_MESSAGE, request_id)
    return middleware.with_boundary_headers(response, request_id).to_dict()


class NotFoundAwareRequestHandler(ChaliceRequestHandler):
    """The local dev server's request handler, with ``NotFoundAwareGateway``."""

    def __init__(
        self,
        request: Any,
        client_address: Any,
        server: Any,
        app_object: Chalice,
        config: Config,
    ) -> None:
        # ChaliceRequestHandler.__init__ only builds its LocalGateway and then handles the
        # request (BaseHTTPRequestHandler does so inside __init__): build ours instead.
        self.local_gateway = NotFoundAwareGateway(app_object, config)
        BaseHTTPRequestHandler.__init__(self, request, client_address, server)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the app's middleware logs every request as structured JSON instead."""


def create_local_server(app: Chalice, config: Config, host: str, port: int) -> LocalDevServer:
    """``chalice.local.create_local_server`` with the 404-aware gateway.

    Like Chalice's, it makes ``app.current_request`` thread-local (the dev server handles each
    connection on its own thread).
    """
    CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
    app.__class__ = CustomLocalChalice
    return LocalDevServer(app, config, host, port, handler_cls=NotFoundAwareRequestHandler)
