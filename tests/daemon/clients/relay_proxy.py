"""A small stand-in for the Pinpoint proxy, on python-socketio (run as a subprocess).

Usage: relay_proxy.py PORT (0: any free port). Clients whose URL has
``?role=requester`` are requesters; every other client is a service (an
ephysd in proxy mode): the proxy asks it ``get_pinpoint_id`` on connect and
prints ``RESPONDER <answer>``. A requester's events are forwarded to the
service with the requester's sid prepended, and the service's ack is relayed
back, as the real proxy does.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import socketio
from aiohttp import web

sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=2, ping_timeout=5)
app = web.Application()
sio.attach(app)
services: dict[str, Any] = {}
requesters: set[str] = set()
tasks: set[asyncio.Task[None]] = set()


def say(*words: Any) -> None:
    print(*words, flush=True)


async def identify(sid: str) -> None:
    answer = await sio.call("get_pinpoint_id", to=sid, timeout=5)
    services[sid] = answer
    say("RESPONDER", answer)


async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
    if "role=requester" in environ.get("QUERY_STRING", ""):
        requesters.add(sid)
        return True
    task = asyncio.ensure_future(identify(sid))
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return True


async def disconnect(sid: str, *reason: Any) -> None:
    requesters.discard(sid)
    if services.pop(sid, None) is not None:
        say("SERVICE-GONE")


async def relay(event: str, sid: str, *args: Any) -> Any:
    if sid not in requesters or not services:
        return None
    service = next(iter(services))
    return await sio.call(event, (sid, *args), to=service, timeout=15)


sio.on("connect", connect)
sio.on("disconnect", disconnect)
sio.on("*", relay)


async def main(port: int) -> None:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    say("PORT", bound)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
