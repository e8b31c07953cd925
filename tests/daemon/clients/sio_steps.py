"""A python-socketio AsyncClient driven by a JSON list of steps (run as a subprocess).

pytest runs Trio; python-socketio needs asyncio, so the real client lives in
its own process. Steps: ["connect"], ["connect", TRANSPORTS|null, AUTH|null, HEADERS],
["call", event, *args], ["emit", event, *args], ["sleep", s], ["disconnect"],
["print", text], ["start", event, *args] (a call left running) and
["finish"] (await the oldest started call), ["spawn", event, *args] (a call
left running that prints {"event": ..., "answer": ...} when it is answered, so
answers print in the order they came) and ["join"] (await every spawned call).
Prints one JSON line per step result, flushed, so the test can follow along.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import socketio


def say(value: Any) -> None:
    print(json.dumps(value), flush=True)


async def main(url: str, steps: list[list[Any]]) -> None:
    client = socketio.AsyncClient(reconnection=False)
    refusals: list[Any] = []
    pending: list[asyncio.Task[Any]] = []
    spawned: list[asyncio.Task[None]] = []

    def call(event: str, args: list[Any]) -> Any:
        data: Any = args[0] if len(args) == 1 else (tuple(args) if args else None)
        return client.call(event, data, timeout=20)

    async def connect_error(data: Any) -> None:
        refusals.append(data)

    client.on("connect_error", connect_error)

    async def answered(event: str, args: list[Any]) -> None:
        say({"event": event, "answer": await call(event, args)})

    for step in steps:
        kind = step[0]
        if kind == "connect":
            transports = step[1] if len(step) > 1 else None
            auth = step[2] if len(step) > 2 else None
            headers = step[3] if len(step) > 3 else {}
            try:
                await client.connect(
                    url, transports=transports, auth=auth, headers=headers, wait_timeout=5
                )
            except socketio.exceptions.ConnectionError as exc:
                await asyncio.sleep(0.1)
                say({"refused": refusals[0] if refusals else str(exc)})
            else:
                say({"connected": client.transport()})
        elif kind == "call":
            say(await call(step[1], step[2:]))
        elif kind == "start":
            pending.append(asyncio.ensure_future(call(step[1], step[2:])))
            await asyncio.sleep(0.05)
            say("started")
        elif kind == "finish":
            say(await pending.pop(0))
        elif kind == "spawn":
            spawned.append(asyncio.ensure_future(answered(step[1], step[2:])))
            await asyncio.sleep(0.05)
        elif kind == "join":
            await asyncio.gather(*spawned)
        elif kind == "emit":
            args = step[2:]
            await client.emit(step[1], args[0] if len(args) == 1 else None)
            say("emitted")
        elif kind == "sleep":
            await asyncio.sleep(step[1])
        elif kind == "disconnect":
            await client.disconnect()
            say("disconnected")
        elif kind == "print":
            say(step[1])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
