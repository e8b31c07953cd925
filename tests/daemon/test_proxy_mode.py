"""Proxy mode against a small relay proxy (python-socketio server in a subprocess)."""

from __future__ import annotations

import json
import sys

import trio

from tests.daemon.e2e import PINPOINT_ID, PROXY, live_process, run_client, running_daemon

PINPOINT_ANSWER = (
    f'{{"PinpointId":"{PINPOINT_ID}","IsRequester":false,'
    f'"pinpoint_id":"{PINPOINT_ID}","is_requester":false}}'
)


async def test_requester_events_are_relayed_and_the_daemon_survives_a_proxy_restart() -> None:
    async with live_process([sys.executable, str(PROXY), "0"]) as proxy:
        port = int((await proxy.next_line()).split()[1])
        async with running_daemon(use_proxy=True, proxy_address=f"127.0.0.1:{port}") as daemon:
            assert daemon.address is None
            assert await proxy.next_line() == f"RESPONDER {PINPOINT_ANSWER}"
            url = f"http://127.0.0.1:{port}?role=requester"
            move = {"ManipulatorId": "1", "Position": {"x": 1, "y": 2, "z": 3, "w": 4}, "Speed": 50}
            results = await run_client(
                "python",
                url,
                [
                    ["connect"],
                    ["call", "get_version"],
                    ["call", "get_manipulators"],
                    ["call", "get_angles", "0"],
                    ["call", "set_position", json.dumps(move)],
                    ["call", "get_position", "1"],
                    ["call", "get_position"],
                    ["call", "stop_all"],
                ],
            )
            assert results[1:] == [
                "2.3.6",
                '{"Manipulators":["0","1","2","3","4","5","6","7"],"Error":""}',
                '{"Angles":{"x":90.0,"y":60.0,"z":0.0},"Error":""}',
                '{"Position":{"x":1.0,"y":2.0,"z":3.0,"w":4.0},"Error":""}',
                '{"Position":{"x":1.0,"y":2.0,"z":3.0,"w":4.0},"Error":""}',
                '{"error": "Malformed request."}',
                "",
            ]
            proxy.process.kill()
            await proxy.process.wait()
            # The daemon keeps running and comes back to a new proxy on the same port.
            await trio.sleep(1.0)
            async with live_process([sys.executable, str(PROXY), str(port)]) as second:
                assert (await second.next_line()) == f"PORT {port}"
                assert await second.next_line(timeout_s=30) == f"RESPONDER {PINPOINT_ANSWER}"
                results = await run_client(
                    "python", url, [["connect"], ["call", "get_position", "1"]]
                )
                assert results[1] == '{"Position":{"x":1.0,"y":2.0,"z":3.0,"w":4.0},"Error":""}'
