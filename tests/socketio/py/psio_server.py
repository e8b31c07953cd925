"""python-socketio AsyncServer (aiohttp) for our client to talk to; run as a subprocess.

Usage: python psio_server.py [PORT]   (0 or absent: a free port). Prints "PORT <n>".
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import socketio
from aiohttp import web


async def main(port: int) -> None:
    sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=1, ping_timeout=1)
    app = web.Application()
    sio.attach(app)

    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        await sio.emit("welcome", auth, to=sid)

    async def echo(sid: str, *args: Any) -> Any:
        return args

    async def echo_back(sid: str, *args: Any) -> None:
        await sio.emit("echoed", list(args), to=sid)

    async def ask_client(sid: str, question: Any) -> Any:
        return await sio.call("question", question, to=sid, timeout=5)

    async def kick(sid: str) -> None:
        await sio.disconnect(sid)

    sio.on("connect", connect)
    for handler in (echo, echo_back, ask_client, kick):
        sio.on(handler.__name__, handler)

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"PORT {bound}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
