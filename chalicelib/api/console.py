"""``GET /console`` and ``GET /console/{asset}``: the operator console, a page and its scripts and
styles (``chalicelib/console/``), served from the deployment package (docs/console.md).

The console is a client of the public API and nothing more: it adds no route that reads or
changes data, and every action it offers is an API call that the API's own admin checks decide.
The files are read when asked for, never at import, so that the API's cold start does not grow.
Its answers carry a strict Content-Security-Policy (scripts and styles from this origin only, no
inline code, connections to this origin only) on top of the middleware's security headers.
"""

from __future__ import annotations

import os

from chalice import Blueprint, NotFoundError, Response

console = Blueprint(__name__)

# The console's files, packaged with chalicelib/ (Chalice zips the folder whole).
ASSETS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "console")
PAGE = "index.html"
# Text only: none of these is one of API Gateway's binary media types, so the body goes out as
# the text it is. An extension not listed here is not served.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
CONSOLE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidated on every load: a deployment's new scripts are never mixed with old ones.
    "Cache-Control": "no-cache",
}


def asset_names() -> set[str]:
    """The files ``/console/{asset}`` serves: the scripts and styles next to the page."""
    return {
        name
        for name in os.listdir(ASSETS_DIR)
        if os.path.splitext(name)[1] in CONTENT_TYPES
        and name != PAGE
        and os.path.isfile(os.path.join(ASSETS_DIR, name))
    }


def serve(name: str) -> Response:
    headers = {**CONSOLE_HEADERS, "Content-Type": CONTENT_TYPES[os.path.splitext(name)[1]]}
    with open(os.path.join(ASSETS_DIR, name), encoding="utf-8") as file:
        return Response(body=file.read(), status_code=200, headers=headers)


@console.route("/console", methods=["GET"])
def console_page() -> Response:
    # The route answers "/console/" too, where the page's relative URLs would miss its files:
    # send the browser to "/console" (relative, so that a stage prefix is kept).
    path = (console.current_request.context or {}).get("path") or ""
    if path.endswith("/"):
        return Response(
            body="", status_code=308, headers={**CONSOLE_HEADERS, "Location": "../console"}
        )
    return serve(PAGE)


@console.route("/console/{asset}", methods=["GET"])
def console_asset(asset: str) -> Response:
    # A name is looked up among the files, never joined into a path as given: no "..", no "/".
    if asset not in asset_names():
        raise NotFoundError("the console has no such file")
    return serve(asset)
