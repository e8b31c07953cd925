"""Proxy mode: the daemon as a Socket.IO *client* of a Pinpoint proxy.

Placeholder until protocol/client.py lands; see run_proxy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from ephysd.api import Api


async def run_proxy(
    api: Api,
    url: str,
    on_proxy_lost: Callable[[], Awaitable[str]] | None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    raise NotImplementedError("proxy mode needs protocol.client (not landed yet)")
