"""/docs and /redoc render every operation in a real browser with no other host reachable."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http.conftest import assert_error
from tests.server.conftest import Served, start_broker
from tidings.server.http.docs import STATIC

BROWSER_TIMEOUT_S = 60
HOST = re.compile(r"https?://([^/\s\"'<>)]+)")
NAVIGATION = {"https://redocly.com/redoc/"}
"""Links a reader may follow that the page does not load: ReDoc's credit in its sidebar."""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One `tidings serve` for the module's pages."""
    broker = start_broker(tmp_path_factory.mktemp("pages") / "data")
    try:
        yield broker
    finally:
        broker.stop()


def operations(served: Served) -> list[dict[str, Any]]:
    """Every operation the OpenAPI document lists: its path, method and summary."""
    paths = httpx.get(f"{served.http}/openapi.json", timeout=10).json()["paths"]
    return [
        {"path": path, "method": method, **operation}
        for path, methods in paths.items()
        for method, operation in methods.items()
    ]


def rendered(url: str, tmp_path: Path) -> str:
    """The DOM of `url` once headless Chromium has run its scripts, no host but its own up."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed; `make tools` installs it (Debian's chromium)")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    own = HOST.match(url)
    assert own is not None, url
    browser = subprocess.Popen(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            # as on a machine with no internet: every name but the server's fails to resolve
            f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE {own[1].rsplit(':', 1)[0]}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its helper processes share its group, stopped with it
    )
    try:
        dom, errors = browser.communicate(timeout=BROWSER_TIMEOUT_S)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(browser.pid, signal.SIGKILL)
        browser.wait()
    assert browser.returncode == 0, f"chromium failed on {url}:\n{errors}"
    return dom


class Page(HTMLParser):
    """A page's elements (tag and attributes), its text, and the hosts it refers to."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.hosts: set[str] = set()
        self._code = False  # inside a style sheet or a script
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Keep the element; note the hosts of its attributes."""
        values = {name: value or "" for name, value in attrs}
        self.elements.append((tag, values))
        self._code = tag in ("style", "script")
        for name, value in values.items():
            # an XML namespace names a vocabulary, nothing is fetched from it
            if not name.startswith("xmlns") and value not in NAVIGATION:
                self.hosts.update(HOST.findall(value))

    def handle_endtag(self, tag: str) -> None:
        """Leave a style sheet or a script."""
        self._code = False

    def handle_data(self, data: str) -> None:
        """Keep text; note the hosts a style sheet or a script refers to."""
        if self._code:
            self.hosts.update(HOST.findall(data))
        else:
            self.text.append(data)

    def with_class(self, name: str) -> list[dict[str, str]]:
        """The attributes of every element with the CSS class `name`."""
        return [attrs for _, attrs in self.elements if name in attrs.get("class", "").split()]


def own_host(served: Served) -> str:
    """The server's host and port, as its URLs spell them."""
    match = HOST.match(served.http)
    assert match is not None, served.http
    return match[1]


def assert_offline(served: Served, path: str, dom: Page) -> None:
    """The page as served and as rendered refers to no host but the server."""
    html = httpx.get(f"{served.http}{path}", timeout=10)
    assert html.status_code == 200, html.text
    assert set(HOST.findall(html.text)) <= {own_host(served)}, html.text
    assert dom.hosts <= {own_host(served)}, dom.hosts


def test_swagger_ui_renders_every_operation_offline(served: Served, tmp_path: Path) -> None:
    page = Page(rendered(f"{served.http}/docs", tmp_path))

    assert page.with_class("opblock"), "Swagger UI rendered no operation"
    shown = {attrs.get("data-path") for attrs in page.with_class("opblock-summary-path")}
    assert "/topics" in shown
    assert {op["path"] for op in operations(served)} <= shown
    assert_offline(served, "/docs", page)


def test_redoc_renders_every_operation_offline(served: Served, tmp_path: Path) -> None:
    page = Page(rendered(f"{served.http}/redoc", tmp_path))

    text = " ".join(page.text)
    summaries = {op["summary"] for op in operations(served)}
    assert "Create Topic" in summaries
    missing = {summary for summary in summaries if summary not in text}
    assert not missing, f"ReDoc did not render {sorted(missing)}"
    assert_offline(served, "/redoc", page)


def test_page_assets_come_from_the_package(served: Served) -> None:
    for asset, kind in [
        ("swagger-ui/swagger-ui-bundle.js", "javascript"),
        ("swagger-ui/swagger-ui.css", "text/css"),
        ("redoc/redoc.standalone.js", "javascript"),
    ]:
        response = httpx.get(f"{served.http}/docs/assets/{asset}", timeout=10)
        assert response.status_code == 200, asset
        assert kind in response.headers["content-type"], response.headers
        assert response.content == (STATIC / asset).read_bytes()


def test_an_unknown_asset_is_a_clear_404(served: Served) -> None:
    # only the packaged files: no way out of their directory, escaped or not
    for name in ["nope.js", "swagger-ui", "%2E%2E/vendor.toml", "swagger-ui%2F..%2F..%2Fdocs.py"]:
        response = httpx.get(f"{served.http}/docs/assets/{name}", timeout=10)
        body = assert_error(response, 404, "not_found")
        assert "no asset" in body["message"], body
