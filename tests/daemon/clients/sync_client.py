"""python-socketio's blocking ``socketio.Client``, as a lab script would use it (a subprocess).

Usage: ``sync_client.py URL TRANSPORTS_JSON`` (``null`` for the default,
polling then upgrade). It connects, waits up to 10 s for the transport to
settle on WebSocket when it may, calls ``get_version`` and prints one JSON line
``{"transport": ..., "version": ...}``, or ``{"refused": ...}`` if the connection
failed. websocket-client underneath sends ``Origin: http://HOST:PORT``, the
address it reached, which is what this client exercises.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import socketio


def main(url: str, transports: list[str] | None) -> dict[str, Any]:
    client = socketio.Client(reconnection=False)
    try:
        client.connect(url, transports=transports, wait_timeout=10)
    except socketio.exceptions.ConnectionError as exc:
        return {"refused": str(exc)}
    try:
        deadline = time.monotonic() + 10
        while client.transport() != "websocket" and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"transport": client.transport(), "version": client.call("get_version", timeout=20)}
    finally:
        client.disconnect()


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], json.loads(sys.argv[2]))), flush=True)
