"""Move one probe of a running ephysd, as any Ephys Link client would.

    .venv/bin/python examples/move_a_probe.py http://127.0.0.1:3000 1

Connects with python-socketio (the client upstream's own tools use), prints
the ``get_manipulators`` answer and the answer of a ``set_position`` that
moves the manipulator to x=1, y=2, z=3, w=4 at 2 mm/s, then disconnects. It
takes control of the rig while it runs, so stop Pinpoint first; the rig page
(``make run`` prints its address) shows the probe move.
"""

from __future__ import annotations

import asyncio
import json
import sys

import socketio


async def main(url: str, manipulator_id: str) -> None:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, wait_timeout=5)
    try:
        print(await client.call("get_manipulators", timeout=10), flush=True)
        move = {
            "ManipulatorId": manipulator_id,
            "Position": {"x": 1, "y": 2, "z": 3, "w": 4},
            "Speed": 2,
        }
        print(await client.call("set_position", json.dumps(move), timeout=60), flush=True)
    finally:
        await client.disconnect()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} URL MANIPULATOR_ID")
    asyncio.run(main(sys.argv[1], sys.argv[2]))
