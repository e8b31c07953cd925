"""A CORS preflight is put to the same ``check_request`` hook as the request it announces."""

from __future__ import annotations

import h11
import httpx
import trio

from protocol.transport import RequestInfo
from tests.engineio.conftest import EIO, StartServer


class OriginList:
    """A check_request hook whose allowed origins the test changes while the server runs."""

    def __init__(self, *origins: str) -> None:
        self.origins = set(origins)
        self.seen: list[RequestInfo] = []

    def check(self, info: RequestInfo) -> str | None:
        self.seen.append(info)
        origin = info.headers.get("origin")
        if origin is None or origin in self.origins:
            return None
        return "Origin not allowed."


async def preflight(eio: EIO, origin: str | None) -> httpx.Response:
    headers = {"Access-Control-Request-Method": "POST"}
    if origin is not None:
        headers["Origin"] = origin
    return await eio.http.options(f"{eio.url}?EIO=4&transport=polling", headers=headers)


def cors_headers(response: httpx.Response) -> list[str]:
    return [name for name in response.headers if name.lower().startswith("access-control-")]


async def test_a_preflight_the_hook_refuses_is_403_with_its_text_and_no_cors_headers(
    start_server: StartServer,
) -> None:
    hook = OriginList("https://ok.example")
    eio = await start_server(check_request=hook.check)
    refused = await preflight(eio, "https://evil.example")
    assert (refused.status_code, refused.text) == (403, "Origin not allowed.")
    assert cors_headers(refused) == []
    assert hook.seen[-1].headers["access-control-request-method"] == "POST"
    # The connection is still good for the next request.
    assert (await preflight(eio, "https://ok.example")).status_code == 204


async def test_a_preflight_the_hook_accepts_is_answered_as_without_a_hook(
    start_server: StartServer,
) -> None:
    eio = await start_server(check_request=OriginList("https://ok.example").check)
    allowed = await preflight(eio, "https://ok.example")
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == "https://ok.example"
    assert allowed.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert allowed.headers["access-control-max-age"] == "86400"
    no_origin = await preflight(eio, None)
    assert no_origin.status_code == 204
    assert cors_headers(no_origin) == []


async def test_the_hook_is_asked_at_each_preflight_so_a_changed_rule_applies_at_once(
    start_server: StartServer,
) -> None:
    hook = OriginList()
    eio = await start_server(check_request=hook.check)
    assert (await preflight(eio, "https://later.example")).status_code == 403
    hook.origins.add("https://later.example")
    assert (await preflight(eio, "https://later.example")).status_code == 204
    hook.origins.clear()
    assert (await preflight(eio, "https://later.example")).status_code == 403


async def test_a_connection_stays_usable_after_an_answered_or_refused_preflight(
    start_server: StartServer,
) -> None:
    eio = await start_server(check_request=OriginList("https://ok.example").check)
    client = h11.Connection(h11.CLIENT)
    statuses: list[int] = []
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", eio.port)
        async with stream:
            for origin in ("https://ok.example", "https://evil.example"):
                headers = [
                    ("host", f"127.0.0.1:{eio.port}"),
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                ]
                target = "/engine.io/?EIO=4&transport=polling"
                request = h11.Request(method="OPTIONS", target=target, headers=headers)
                await stream.send_all(
                    (client.send(request) or b"") + (client.send(h11.EndOfMessage()) or b"")
                )
                while True:
                    event = client.next_event()
                    if event is h11.NEED_DATA:
                        client.receive_data(await stream.receive_some(65536))
                    elif isinstance(event, h11.Response):
                        statuses.append(event.status_code)
                        # No "connection: close": the client may send the next one here.
                        assert (b"connection", b"close") not in event.headers
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif not isinstance(event, h11.Data):
                        raise AssertionError(f"unexpected {event!r}")
                client.start_next_cycle()
    assert statuses == [204, 403]
