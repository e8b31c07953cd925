"""A browser's CORS preflight gets the same Origin verdict as the request it announces.

The daemon's Origin rule lives in :meth:`ephysd.security.AccessPolicy.check_request`
and changes on SIGHUP; these tests send the preflight a browser would send
before a cross-origin polling POST, over a real socket to the real daemon.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from tests.service.daemon import run_daemon

FAKE_RIG = 'platform = "fake"\nlisten = "127.0.0.1:0"\n'
PINPOINT_WEB = "https://pinpoint.allenneuraldynamics.org"
LATER_WEB = "https://later.example"


def polling_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling"


async def preflight(http: httpx.AsyncClient, port: int, origin: str) -> httpx.Response:
    """The OPTIONS a browser sends before a cross-origin POST with a content-type."""
    return await http.options(
        polling_url(port),
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )


def cors_headers(response: httpx.Response) -> list[str]:
    return [name for name in response.headers if name.lower().startswith("access-control-")]


async def test_a_preflight_from_a_foreign_origin_is_refused_without_cors_headers(
    tmp_path: Path,
) -> None:
    config = FAKE_RIG + f'allow_origin = ["{PINPOINT_WEB}"]\n'
    async with run_daemon(tmp_path, config) as daemon:
        await daemon.wait_for("READY=1")
        port = await daemon.wait_listening(5)
        async with httpx.AsyncClient(timeout=10) as http:
            for origin in ("https://evil.example", "http://localhost:8000", "null"):
                response = await preflight(http, port, origin)
                assert response.status_code == 403, (origin, response.headers)
                assert cors_headers(response) == [], (origin, response.headers)


async def test_a_preflight_from_an_allowed_origin_gets_the_cors_headers(tmp_path: Path) -> None:
    config = FAKE_RIG + f'allow_origin = ["{PINPOINT_WEB}"]\n'
    async with run_daemon(tmp_path, config) as daemon:
        await daemon.wait_for("READY=1")
        port = await daemon.wait_listening(5)
        async with httpx.AsyncClient(timeout=10) as http:
            response = await preflight(http, port, PINPOINT_WEB)
            # And the request it announced goes through as well.
            handshake = await http.get(polling_url(port), headers={"Origin": PINPOINT_WEB})
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == PINPOINT_WEB
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "content-type"
    assert handshake.status_code == 200 and handshake.text.startswith("0{")
    assert handshake.headers["access-control-allow-origin"] == PINPOINT_WEB


async def test_an_options_request_without_origin_is_answered_as_before(tmp_path: Path) -> None:
    async with run_daemon(tmp_path, FAKE_RIG) as daemon:
        await daemon.wait_for("READY=1")
        port = await daemon.wait_listening(5)
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.options(polling_url(port))
    assert response.status_code == 204
    assert cors_headers(response) == []


async def test_an_origin_added_by_sighup_may_preflight_and_one_removed_may_not(
    tmp_path: Path,
) -> None:
    config = FAKE_RIG + f'allow_origin = ["{PINPOINT_WEB}"]\n'
    async with run_daemon(tmp_path, config) as daemon:
        await daemon.wait_for("READY=1")
        port = await daemon.wait_listening(5)
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await preflight(http, port, LATER_WEB)).status_code == 403
            (tmp_path / "ephysd.toml").write_text(FAKE_RIG + f'allow_origin = ["{LATER_WEB}"]\n')
            daemon.signal(signal.SIGHUP)
            await daemon.wait_for("RELOADING=1")
            await daemon.wait_for("READY=1")
            added = await preflight(http, port, LATER_WEB)
            removed = await preflight(http, port, PINPOINT_WEB)
    assert added.status_code == 204
    assert added.headers["access-control-allow-origin"] == LATER_WEB
    assert removed.status_code == 403
    assert cors_headers(removed) == []
