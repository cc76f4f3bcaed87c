"""``GET /console`` and its files (docs/console.md): served from the package with the console's
strict security headers and the right text content types; nothing else is served; and the
console's own code has no inline script or style, and builds the page without parsing HTML."""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from app import app
from chalicelib.api import console

ASSETS = Path(console.ASSETS_DIR)
PROJECT_DIR = Path(__file__).resolve().parents[2]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def assert_console_headers(response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, name


def test_the_page_is_html_with_the_console_security_headers(api_client):
    response = api_client.http.get("/console")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert_console_headers(response)
    assert response.headers["X-Request-Id"]
    assert b'<script type="module" src="console/app.js">' in response.body


def test_the_page_with_a_trailing_slash_sends_the_browser_to_the_page(api_client):
    """From "/console/" the page's relative URLs would miss its files; "../console" keeps a
    deployed stage's prefix ("/api/console/" -> "/api/console")."""
    response = api_client.http.get("/console/")

    assert response.status_code == 308
    assert response.headers["Location"] == "../console"
    assert_console_headers(response)


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("api.js", "text/javascript; charset=utf-8"),
        ("chart.js", "text/javascript; charset=utf-8"),
        ("console.css", "text/css; charset=utf-8"),
    ],
)
def test_each_file_has_its_text_content_type_and_the_headers(api_client, name, content_type):
    response = api_client.http.get(f"/console/{name}")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert_console_headers(response)
    assert response.body == (ASSETS / name).read_bytes()


def test_every_file_the_page_needs_is_served(api_client):
    """Each module the scripts import, and the style sheet, answers 200: nothing is left out of
    the package or the allow-list."""
    needed = {"app.js", "console.css"}
    for script in ASSETS.glob("*.js"):
        needed |= set(re.findall(r'from "\./([a-z0-9-]+\.js)"', script.read_text()))
    assert needed <= console.asset_names()
    for name in needed:
        assert api_client.http.get(f"/console/{name}").status_code == 200, name


@pytest.mark.parametrize(
    "name", ["nope.js", "index.html", "..%2Fconsole.py", "%2E%2E", "app.js.map", "API.JS"]
)
def test_an_unknown_file_is_a_404_envelope(api_client, name):
    response = api_client.http.get(f"/console/{name}")

    assert response.status_code == 404
    assert response.json_body["error"]["code"] == "not_found"
    assert response.json_body["error"]["request_id"] == response.headers["X-Request-Id"]


def test_no_file_is_served_as_a_binary_media_type():
    """API Gateway would expect base64 for a binary media type: every console file is text."""
    assert set(console.CONTENT_TYPES.values()).isdisjoint(app.api.binary_types)
    assert {p.suffix for p in ASSETS.iterdir()} <= set(console.CONTENT_TYPES)


def test_the_console_adds_nothing_to_the_apis_cold_start():
    """Its files are read when asked for, not at import, and its module loads no module that
    the rest of the app does not load already."""
    source = Path(console.__file__).read_text()
    module_level = [line for line in source.splitlines() if line and not line[0].isspace()]
    assert not any("open(" in line or "listdir(" in line for line in module_level)
    others = [
        line.split()[1]
        for line in Path(PROJECT_DIR / "app.py").read_text().splitlines()
        if line.startswith("from chalicelib") and "console" not in line
    ]
    code = (
        f"import sys; import {', '.join(others)}; before = set(sys.modules); "
        "import chalicelib.api.console; print(sorted(set(sys.modules) - before))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_DIR, capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "['chalicelib.api.console']"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.script_text.append(data)


def test_the_page_has_no_inline_script_style_or_handler():
    page = _Tags()
    page.feed((ASSETS / "index.html").read_text())

    assert page.script_text == []
    for tag, attrs in page.tags:
        assert not any(name.startswith("on") for name in attrs), tag
        assert "style" not in attrs, tag
        if tag == "script":
            assert attrs.get("src", "").startswith("console/"), attrs
        assert tag != "style"
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            assert not re.match(r"(https?:)?//|javascript:", value), (tag, value)


# What would parse data as HTML, run text as code, or write a style attribute.
FORBIDDEN_IN_SCRIPTS = (
    "innerHTML",
    "outerHTML",
    "insertAdjacentHTML",
    "document.write",
    "eval(",
    "new Function",
    'setAttribute("style"',
    "setAttribute('style'",
    ".style.",
    "cssText",
    "localStorage",
    "sessionStorage",
    "document.cookie",
    "http://",
    "https://",
)


@pytest.mark.parametrize("script", sorted(p.name for p in ASSETS.glob("*.js")))
def test_scripts_build_the_page_from_text_and_keep_tokens_in_memory(script):
    lines = (ASSETS / script).read_text().splitlines()
    source = "\n".join(line for line in lines if not line.lstrip().startswith("//"))  # code only
    # The SVG namespace is a name, not an address the console connects to.
    source = source.replace('"http://www.w3.org/2000/svg"', "SVG_NAMESPACE")

    found = [word for word in FORBIDDEN_IN_SCRIPTS if word in source]
    assert found == [], script


def test_the_scripts_call_only_the_v1_api_by_relative_urls():
    """Relative to the API's root (``api.js``: ``new URL("../", import.meta.url)``), so the
    console works under a deployed stage's prefix (``/api/console``) as on the local stack."""
    paths: list[str] = []
    fetches: list[str] = []
    for script in ASSETS.glob("*.js"):
        source = script.read_text()
        paths += re.findall(r'[`"](/?v1/[^`"]*)', source)
        if "fetch(" in source:
            fetches.append(script.name)
    assert len(paths) > 20
    assert [p for p in paths if p.startswith("/")] == []
    assert fetches == ["api.js"]
