"""A python-socketio client steered by JSON lines on stdin (run as a subprocess by the tests).

pytest runs Trio and python-socketio needs asyncio, so the client lives in its
own process. Each stdin line is ``{"id": N, "event": NAME, "data": ...}``; the
call runs in the background (so a ``stop`` can overtake a ``set_position``) and
its answer is printed as ``{"id": N, "answer": ..., "elapsed": seconds}``.
The first line printed is ``{"connected": true}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import socketio


def say(value: Any) -> None:
    print(json.dumps(value), flush=True)


async def main(url: str) -> None:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, wait_timeout=10)
    say({"connected": True})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks: set[asyncio.Task[None]] = set()

    async def call(request: dict[str, Any]) -> None:
        start = time.perf_counter()
        try:
            answer = await client.call(request["event"], request.get("data"), timeout=30)
        except Exception as exc:
            answer = {"exception": repr(exc)}
        say({"id": request["id"], "answer": answer, "elapsed": time.perf_counter() - start})

    while line := await reader.readline():
        task = asyncio.ensure_future(call(json.loads(line)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    await client.disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
