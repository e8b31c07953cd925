"""The servers the benchmarks drive, each started as its own subprocess.

    python bench/_servers.py floor --port N [--reply JSON_ARRAY]
    python bench/_servers.py python-socketio --port N
    python bench/_servers.py ours --port N

All three answer the EVENT ``["ping", s]`` with the ACK ``[s]``. The floor
server does no Socket.IO at all: it sends a canned Engine.IO OPEN and
Socket.IO CONNECT answer, then answers every EVENT frame with a canned ACK
carrying the frame's ack id. Whatever a real server costs above the floor is
its Engine.IO/Socket.IO machinery. Imports are local to each server so that
every process loads only what it runs (it matters for memory figures).
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

HOST = "127.0.0.1"
# Like python-socketio's defaults, so that no server pings during a short run.
OPEN_PACKET = (
    '0{"sid":"floor-sid","upgrades":[],"pingInterval":25000,'
    '"pingTimeout":20000,"maxPayload":1000000}'
)
CONNECT_ANSWER = '40{"sid":"floor-ns-sid"}'


def _raise_exit() -> None:
    raise SystemExit(0)


def run_floor(port: int, reply: str) -> None:
    """websockets + canned frames: the cost of a WebSocket round trip and nothing else."""
    import asyncio

    from websockets.asyncio.server import ServerConnection, serve

    async def session(ws: ServerConnection) -> None:
        await ws.send(OPEN_PACKET)
        async for message in ws:
            if not isinstance(message, str):
                continue
            if message.startswith("42"):
                bracket = message.find("[", 2)
                await ws.send(f"43{message[2:bracket]}{reply}")
            elif message.startswith("40"):
                await ws.send(CONNECT_ANSWER)

    async def main() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, _raise_exit)
        async with serve(
            session, HOST, port, compression=None, ping_interval=None, max_size=1 << 20
        ) as server:
            await server.serve_forever()

    asyncio.run(main())


def run_python_socketio(port: int) -> None:
    """python-socketio AsyncServer on aiohttp, the stack the upstream server uses."""
    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)

    async def ping(sid: str, data: Any) -> Any:
        return data

    sio.on("ping", ping)
    web.run_app(app, host=HOST, port=port, print=None, access_log=None)


def run_ours(port: int) -> None:
    """protocol.server.SocketIOServer on Trio, default configuration."""
    import trio

    from protocol.server import ServerConfig, SocketIOServer

    server = SocketIOServer(ServerConfig())

    async def ping(sid: str, data: Any) -> Any:
        return data

    server.on("ping", ping)

    async def main() -> None:
        # SIGTERM ends the server cleanly (so that a --profile run writes its stats).
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.serve, HOST, port)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kind", choices=["floor", "python-socketio", "ours"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reply", default='["x"]', help="floor: canned ACK arguments (JSON)")
    parser.add_argument("--profile", default="", help="write cProfile stats here on exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    run: Callable[[], None]
    if args.kind == "floor":
        run = lambda: run_floor(args.port, args.reply)  # noqa: E731
    elif args.kind == "python-socketio":
        run = lambda: run_python_socketio(args.port)  # noqa: E731
    else:
        run = lambda: run_ours(args.port)  # noqa: E731
    profiler = cProfile.Profile() if args.profile else None
    try:
        if profiler is not None:
            profiler.runcall(run)
        else:
            run()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        if profiler is not None:
            profiler.dump_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
