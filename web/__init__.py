"""The browser client: the page at `/`, its static files under `/web/`, and their security headers.

The client is plain ES modules and CSS in web/static, served as they are (no build
step). Every response from this blueprint carries a strict Content-Security-Policy:
no inline script or style, and connections (fetch and the WebSocket) to this origin only.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

STATIC = Path(__file__).resolve().parent / "static"

# 'self' in connect-src covers ws:// and wss:// to the same host and port (CSP level 3).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

bp = Blueprint("web", __name__)


@bp.get("/")
def index() -> Response:
    return send_from_directory(STATIC, "index.html", max_age=0)


@bp.get("/web/<path:filename>")
def static_file(filename: str) -> Response:
    # send_from_directory refuses paths that leave STATIC (404). no-cache: the browser
    # revalidates each file, so a new version of the client is picked up at once.
    return send_from_directory(STATIC, filename, max_age=0)


@bp.after_request
def add_security_headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response
