"""The real daemon under a fake systemd: READY, WATCHDOG, STATUS, SIGTERM, SIGHUP.

Each test starts ``ephysd`` as a subprocess with ``NOTIFY_SOCKET`` pointing
at a datagram socket the test bound, exactly as systemd runs a Type=notify
unit, and talks to it with a real Socket.IO client.
"""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from drivers.newscale.sim import NewScaleSim
from tests.service.daemon import DaemonProcess, run_daemon
from tests.service.sio import Refused, sio_client, websocket

FAKE_RIG = 'platform = "fake"\nlisten = "127.0.0.1:0"\n'
HALT = b"<03>\r"


async def test_ready_after_listening_then_watchdog_pings_then_stopping_and_exit_0(
    tmp_path: Path,
) -> None:
    async with run_daemon(tmp_path, FAKE_RIG, watchdog_usec=400_000) as daemon:
        ready = await daemon.wait_for("READY=1")
        port = await daemon.wait_listening(5)
        # Listening before READY: the port is accepting right now.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        status = [f for f in ready.split("\n") if f.startswith("STATUS=")]
        assert status and "fake" in status[0], ready

        pings = 0
        with trio.move_on_after(1.5):
            while True:
                if await daemon.next_notification() == "WATCHDOG=1":
                    pings += 1
        assert pings >= 3, daemon.messages

        daemon.process.send_signal(signal.SIGTERM)
        sent = trio.current_time()
        await daemon.wait_for("STOPPING=1", timeout_s=5)
        assert await daemon.wait_exit(10) == 0, daemon.output()
        assert trio.current_time() - sent < 2.0, daemon.output()


async def test_status_says_whether_a_client_is_connected(tmp_path: Path) -> None:
    async with run_daemon(tmp_path, FAKE_RIG) as daemon:
        await daemon.wait_for("READY=1")
        port = await daemon.wait_listening(5)
        async with sio_client(port) as client:
            assert await client.call("get_version")
            with trio.fail_after(10):
                while "client" not in (status := await daemon.next_notification()) or (
                    "no client" in status
                ):
                    pass
            assert status.startswith("STATUS=") and "connected" in status
        with trio.fail_after(10):
            while "no client" not in await daemon.next_notification():
                pass


async def test_sigterm_halts_every_stage_of_every_moving_manipulator_and_exits_0(
    tmp_path: Path,
) -> None:
    sims = [NewScaleSim(), NewScaleSim()]
    async with trio.open_nursery() as rig:
        paths = [await rig.start(sim.run) for sim in sims]
        config = (
            'platform = "newscale"\nlisten = "127.0.0.1:0"\n'
            f'port = ["a={paths[0]}", "b={paths[1]}"]\n'
        )
        async with run_daemon(tmp_path, config) as daemon:
            await daemon.wait_for("READY=1")
            port = await daemon.wait_listening(5)
            async with sio_client(port) as client, trio.open_nursery() as moves:
                for manipulator in ("a", "b"):
                    request = {
                        "ManipulatorId": manipulator,
                        "Position": {"x": 0.5, "y": 0.5, "z": 0.5, "w": 0.5},
                        "Speed": 0.1,
                    }
                    moves.start_soon(client.call, "set_position", json.dumps(request))
                # The simulator has no event for "moving": poll it, bounded.
                for _ in range(500):
                    if all(stage.running for sim in sims for stage in sim.stages.values()):
                        break
                    await trio.sleep(0.02)
                else:
                    raise AssertionError("the stages never started moving")
                before = [len(sim.received) for sim in sims]

                daemon.process.send_signal(signal.SIGTERM)
                sent = trio.current_time()
                await daemon.wait_for("STOPPING=1", timeout_s=5)
                assert await daemon.wait_exit(10) == 0, daemon.output()
                assert trio.current_time() - sent < 2.0, daemon.output()
                moves.cancel_scope.cancel()

            for sim, start in zip(sims, before, strict=True):
                halted = {r.stage for r in sim.received[start:] if r.raw == HALT}
                assert halted >= {1, 2, 3}, sim.raw_frames()[start:]
                assert not any(stage.running for stage in sim.stages.values())
                # Stopped part-way: nowhere near the 0.5 mm target.
                assert all(sim.stage_position_mm(a) > 5 for a in sim.stages)
        rig.cancel_scope.cancel()


FIRST, SECOND = "https://first.example", "https://second.example"


@asynccontextmanager
async def daemon_allowing_first(tmp_path: Path) -> AsyncIterator[tuple[DaemonProcess, int]]:
    """A ready daemon on the fake rig whose config allows the origin FIRST; and its port."""
    async with run_daemon(tmp_path, FAKE_RIG + f'allow_origin = ["{FIRST}"]\n') as daemon:
        await daemon.wait_for("READY=1")
        yield daemon, await daemon.wait_listening(5)


async def test_sighup_reloads_origins_and_log_level_without_dropping_the_client(
    tmp_path: Path,
) -> None:
    first, second = FIRST, SECOND
    async with (
        daemon_allowing_first(tmp_path) as (daemon, port),
        sio_client(port) as client,
        sio_client(port, {"role": "observer"}) as observer,
        websocket(port, origin=first),
    ):
        assert await client.call("get_version")
        await observer.next_event("rig_state")
        assert not any(" DEBUG " in line for line in daemon.lines)
        (tmp_path / "ephysd.toml").write_text(
            FAKE_RIG + f'allow_origin = ["{second}"]\ndebug = true\n'
        )
        daemon.process.send_signal(signal.SIGHUP)
        await daemon.wait_for("RELOADING=1")
        await daemon.wait_for("READY=1")
        with pytest.raises(Refused) as refused:
            async with websocket(port, origin=first):
                pass
        assert refused.value.status == 403
        async with websocket(port, origin=second):
            pass
        # The rig page's own origin is allowed whatever the list says.
        async with websocket(port, origin=f"http://127.0.0.1:{port}"):
            pass
        # The controlling client never noticed, nor did the observer.
        assert not client.closed.is_set()
        assert await client.call("get_version")
        assert not observer.closed.is_set()
        await observer.next_event("rig_state")
        assert await observer.call("stop_all") == ""
        # And the log level followed: wire-level detail now reaches the log.
        await daemon.wait_for_line(" DEBUG ")


async def test_a_sighup_with_a_bad_file_changes_nothing_and_the_daemon_serves_on(
    tmp_path: Path,
) -> None:
    first, second = FIRST, SECOND
    async with daemon_allowing_first(tmp_path) as (daemon, port):
        # Good debug and origin lines, then one error further down.
        (tmp_path / "ephysd.toml").write_text(
            FAKE_RIG + f'allow_origin = ["{second}"]\ndebug = true\n[limits]\nmax_payload = 0\n'
        )
        daemon.process.send_signal(signal.SIGHUP)
        await daemon.wait_for("READY=1")
        failed = await daemon.wait_for_line("reload failed")
        assert "max_payload" in failed and "keeping the previous settings" in failed
        async with websocket(port, origin=first), sio_client(port) as client:
            assert await client.call("get_version")
        with pytest.raises(Refused):
            async with websocket(port, origin=second):
                pass
        assert not any(" DEBUG " in line for line in daemon.lines)
