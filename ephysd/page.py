"""The rig page: static files shipped inside the package, on the daemon's own port.

Everything the page needs lives in ``ephysd/web`` (its HTML, script and style,
and the official Socket.IO browser client, vendored unmodified), so it works
on a rig PC with no network. The page talks to the daemon over the same
Socket.IO API as any client, as an observer (:mod:`ephysd.observers`); what it
shows comes from the rig_state publisher (:mod:`ephysd.rig_state`), never
from a second path into the devices.

The protocol server calls :func:`serve_page` for every request outside
``/socket.io/``, after the same access checks (allow list, Origin). Its
answers carry a Content-Security-Policy that allows scripts, styles and
connections from the daemon's own origin only, so even text that slipped past
the page's escaping could not run a script or reach another host.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from protocol.engineio.http import Response
from protocol.transport import RequestInfo

_JS = "text/javascript; charset=utf-8"
# URL path -> (file under ephysd/web, content type).
FILES: Final[dict[str, tuple[str, str]]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/rig.js": ("rig.js", _JS),
    "/rig.css": ("rig.css", "text/css; charset=utf-8"),
    "/vendor/socket.io.min.js": ("vendor/socket.io.min.js", _JS),
}

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
    " img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS: Final = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-cache"),
)

# Each file's bytes, read on its first request: a daemon nobody looks at
# never holds them.
_loaded: dict[str, bytes] = {}


def page_file(name: str) -> bytes:
    """The bytes of ``ephysd/web/NAME``."""
    body = _loaded.get(name)
    if body is None:
        body = _loaded[name] = resources.files("ephysd").joinpath("web", name).read_bytes()
    return body


async def serve_page(method: str, request: RequestInfo) -> Response | None:
    """The page's files for GET; None (404) for any other path."""
    entry = FILES.get(request.path)
    if entry is None:
        return None
    if method != "GET":
        return Response(
            405,
            b"Only GET is served here.",
            (("allow", "GET"), ("content-type", "text/plain; charset=utf-8")),
        )
    name, content_type = entry
    return Response(200, page_file(name), (("content-type", content_type), *HEADERS))
