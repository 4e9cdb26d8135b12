"""The page and its files are served under the Procfile's gunicorn too, each with the security headers.

No browser needed: this is plain HTTP against the real server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support import ROOT, GunicornProcess

EXPECTED = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
STATIC = ROOT / "web" / "static"


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornProcess]:
    proc = GunicornProcess(tmp_path_factory.mktemp("gunicorn-web"))
    proc.start()
    yield proc
    try:
        proc.stop()
    except Exception:
        proc.kill()


def first_load() -> list[Path]:
    """index.html and every file it pulls in: its links, and the modules they import."""
    index = STATIC / "index.html"
    files = [index]
    todo = [index]
    while todo:
        text = todo.pop().read_text()
        for ref in re.findall(r'(?:href|src)="/web/([^"]+)"|from "\./([^"]+)"', text):
            name = ref[0] or f"js/{ref[1]}"
            path = STATIC / name
            if path not in files:
                files.append(path)
                if path.suffix == ".js":
                    todo.append(path)
    return files


def test_every_file_of_the_page_has_the_security_headers_under_gunicorn(
    gunicorn: GunicornProcess,
) -> None:
    """/ and each file it loads answer 200 with the strict CSP and friends, with the right types."""
    files = first_load()
    assert {p.name for p in files} >= {"index.html", "main.js", "live.js", "style.css"}
    with requests.Session() as http:
        for path in files:
            route = "/" if path.name == "index.html" else f"/web/{path.relative_to(STATIC)}"
            r = http.get(gunicorn.url + route, timeout=10)
            assert r.status_code == 200, route
            for name, value in EXPECTED.items():
                assert r.headers.get(name) == value, (route, name)
            assert "Set-Cookie" not in r.headers
            kind = {".html": "text/html", ".js": "javascript", ".css": "text/css"}.get(path.suffix)
            assert kind is None or kind in r.headers["Content-Type"], route
        # A missing file is the API's JSON 404, with the headers, and nothing outside web/static.
        for route in ("/web/nope.js", "/web/../app.py", "/web/%2e%2e/app.py"):
            r = http.get(gunicorn.url + route, timeout=10)
            assert r.status_code == 404, route
        assert http.get(gunicorn.url + "/web/nope.js").headers["X-Frame-Options"] == "DENY"


def test_the_first_load_is_small_and_has_no_inline_script_or_style() -> None:
    """Under 150 KB in all, and nothing the CSP would refuse: no inline script, style or handler."""
    files = first_load()
    assert sum(p.stat().st_size for p in files) < 150_000
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert not re.search(r"\sstyle=|<style|\son[a-z]+=", html)
    for path in STATIC.rglob("*.js"):
        assert "innerHTML" not in path.read_text(), path
