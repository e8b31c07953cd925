"""Proxy mode: the daemon as a Socket.IO *client* of a Pinpoint proxy.

A remote Pinpoint cannot reach the rig, so both connect out to a proxy, which
pairs them by the Pinpoint ID the daemon printed. The proxy forwards each of
the requester's events to us with the requester's socket id prepended, so the
request data is the *second* argument; we drop the first and answer through
the same :class:`~ephysd.api.Api` as the local server.

The client reconnects with jittered exponential backoff for as long as the
daemon runs: a proxy that is down is never a reason to exit. Losing the proxy
means losing the remote operator's stop button, so by default every motion is
stopped when the connection drops.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ephysd.api import Api
from protocol.client import SocketIOClient

log = logging.getLogger(__name__)


def build_proxy_client(
    api: Api,
    url: str,
    on_proxy_lost: Callable[[], Awaitable[str]] | None,
    *,
    backoff_initial_s: float = 0.5,
    backoff_max_s: float = 10.0,
) -> SocketIOClient:
    client = SocketIOClient(
        url, reconnect=True, backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s
    )

    async def on_event(event: str, *args: Any) -> str:
        # args[0] is the requester's socket id; the request data follows it.
        return await api.handle(event, args[1:])

    async def on_connect() -> None:
        log.info("connected to proxy %s; Pinpoint ID %s", url, api.pinpoint_id)

    async def on_disconnect(reason: str) -> None:
        log.warning("lost the proxy %s (%s); reconnecting", url, reason)
        if on_proxy_lost is not None:
            errors = await on_proxy_lost()
            if errors:
                log.error("stopping motion after losing the proxy failed: %s", errors)
            else:
                log.info("all motion stopped after losing the proxy")

    client.on_any(on_event)
    client.on_connect(on_connect)
    client.on_disconnect(on_disconnect)
    return client


async def run_proxy(
    api: Api,
    url: str,
    on_proxy_lost: Callable[[], Awaitable[str]] | None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the API through the proxy at ``url`` until cancelled.

    Reports started at once, before the first connection: the daemon is
    ready (and says so to systemd) even while the proxy is unreachable.
    """
    client = build_proxy_client(api, url, on_proxy_lost)
    await client.run(task_status=task_status)
