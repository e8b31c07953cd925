"""Drive our server with python-socketio's AsyncClient; print one JSON line of results.

Usage: python psio_client.py URL polling|websocket|upgrade
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from typing import Any

import socketio


async def main(url: str, mode: str) -> dict[str, Any]:
    transports = {
        "polling": ["polling"],
        "websocket": ["websocket"],
        "upgrade": ["polling", "websocket"],
    }[mode]
    client = socketio.AsyncClient(reconnection=False)
    welcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    echoed: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

    async def on_welcome(auth: Any) -> None:
        welcome.set_result(auth)

    async def on_echoed(*args: Any) -> None:
        echoed.set_result(list(args))

    async def on_question(*args: Any) -> tuple[Any, ...]:
        return ("answer", *args)

    client.on("welcome", on_welcome)
    client.on("echoed", on_echoed)
    client.on("question", on_question)
    await client.connect(url, transports=transports, auth={"token": "py"}, wait_timeout=5)
    try:
        echo = await client.call("echo", ("a", 1, {"b": [True, None]}), timeout=5)
        binary = await client.call("echo", (b"\x01\x02\x03", {"nested": b"\xff"}), timeout=5)
        await client.emit("emit_back", ("x", b"\x09"))
        echoed_args = await asyncio.wait_for(echoed, 5)
        asked = await client.call("ask_client", "q", timeout=5)
        return {
            "transport": client.transport(),
            "welcome": await asyncio.wait_for(welcome, 5),
            "echo": echo,
            "binary": [base64.b64encode(binary[0]).decode(), binary[1]["nested"].hex()],
            "echoed": [echoed_args[0], echoed_args[1].hex()],
            "asked": asked,
        }
    finally:
        await client.disconnect()


if __name__ == "__main__":
    result = asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), 15))
    print(json.dumps(result), flush=True)
