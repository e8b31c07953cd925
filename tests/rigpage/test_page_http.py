"""``GET /`` serves the rig page from the package, under the daemon's access rules."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from ephysd.api import EPHYS_LINK_API_VERSION
from ephysd.page import FILES, page_file
from tests.daemon.e2e import port_of, running_daemon, url_of
from tests.service.sio import Refused, sio_client

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "ephysd" / "web"


async def fetch(url: str, method: str = "GET", **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        return await client.request(method, url, headers=headers)


async def test_the_page_and_every_file_it_names_are_served_on_the_daemons_own_port() -> None:
    async with running_daemon() as daemon:
        url = url_of(daemon)
        page = await fetch(url + "/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "<title>ephysd rig</title>" in page.text
        assert "Stop all" in page.text
        named = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert set(named) == {"data:,", "rig.css", "vendor/socket.io.min.js", "rig.js"}
        for name in named:
            if name == "data:,":  # an empty icon, so the browser asks for no favicon
                continue
            asset = await fetch(f"{url}/{name}")
            assert asset.status_code == 200, name
            assert asset.content == (WEB / name).read_bytes()
            kind = "text/css" if name.endswith(".css") else "text/javascript"
            assert asset.headers["content-type"].startswith(kind)
        # The Socket.IO API still answers on the same port.
        async with sio_client(port_of(daemon)) as client:
            assert await client.call("get_version") == EPHYS_LINK_API_VERSION


async def test_the_page_allows_nothing_from_elsewhere_and_no_framing() -> None:
    async with running_daemon() as daemon:
        page = await fetch(url_of(daemon) + "/")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self';" in policy and "connect-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"


def test_the_page_needs_nothing_from_the_network() -> None:
    """No file of the page names another host: it works on a rig PC that is offline."""
    for name in {entry[0] for entry in FILES.values()}:
        text = page_file(name).decode()
        if name.startswith("vendor/"):
            continue  # the official bundle only builds URLs from what io() is given
        found = re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}", text)
        assert found == ["http://www.w3.org"] if name == "rig.js" else found == [], name


def test_the_vendored_socketio_client_is_the_official_pinned_bundle_unmodified() -> None:
    pinned = json.loads((REPO / "package.json").read_text())["dependencies"]["socket.io-client"]
    bundle = page_file("vendor/socket.io.min.js")
    assert bundle.startswith(f"/*!\n * Socket.IO v{pinned}\n".encode())
    installed = REPO / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
    if not installed.exists():
        pytest.skip("node_modules not installed (make test installs it): cannot compare bytes")
    assert bundle == installed.read_bytes()


def test_the_page_script_never_writes_html() -> None:
    """Everything shown goes in as text; the browser test checks it with hostile text."""
    script = page_file("rig.js").decode()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink


async def test_other_paths_are_not_found_and_other_methods_not_allowed() -> None:
    async with running_daemon() as daemon:
        url = url_of(daemon)
        assert (await fetch(url + "/etc/passwd")).status_code == 404
        assert (await fetch(url + "/../ephysd/page.py")).status_code == 404
        assert (await fetch(url + "/rig.js.map")).status_code == 404
        posted = await fetch(url + "/", "POST")
        assert posted.status_code == 405
        assert posted.headers["allow"] == "GET"
        # And the daemon keeps serving.
        assert (await fetch(url + "/")).status_code == 200


async def test_the_page_obeys_the_origin_rule_and_the_allow_list() -> None:
    async with running_daemon() as daemon:
        url = url_of(daemon)
        foreign = await fetch(url + "/", origin="https://evil.example")
        assert foreign.status_code == 403
        assert foreign.text == "Origin not allowed."
        embedded = await fetch(url + "/rig.js", **{"sec-fetch-site": "cross-site"})
        assert embedded.status_code == 403
        typed = await fetch(url + "/", **{"sec-fetch-site": "none"})
        assert typed.status_code == 200
    async with running_daemon(allow=("10.0.0.0/8",)) as daemon:
        refused = await fetch(url_of(daemon) + "/")
        assert refused.status_code == 403
        assert refused.text == "Client address not allowed."
        with pytest.raises(Refused):
            async with sio_client(port_of(daemon), {"role": "observer"}):
                pass


async def test_an_observer_from_a_foreign_page_is_refused_and_from_the_page_itself_welcome() -> (
    None
):
    """No --allow-origin needed for the page: its own origin is the daemon's address."""
    async with running_daemon() as daemon:
        with pytest.raises(Refused) as refused:
            async with sio_client(port_of(daemon), {"role": "observer"}, "https://evil.example"):
                pass
        assert refused.value.status == 403
        own = url_of(daemon)
        assert (await fetch(own + "/rig.js", origin=own)).status_code == 200
        async with sio_client(port_of(daemon), {"role": "observer"}, own) as observer:
            assert await observer.call("get_version") == EPHYS_LINK_API_VERSION
