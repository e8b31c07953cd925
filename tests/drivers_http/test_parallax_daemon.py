"""Every stop path of the daemon reaches a Parallax stage and waits for it to take.

A Parallax stop is confirmed by watching the stage stand still, which takes
longer than the daemon's default halt deadline: these tests run the real
actors (and, for the signals, the real ``ephysd`` process) against the emulator.
"""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from drivers.base import PlatformOptions
from drivers.parallax import create_platform
from drivers.parallax.sim import ParallaxSim
from ephysd.actor import ActorLimits
from ephysd.api import Api
from ephysd.rig import open_rig
from tests.drivers_http.harness import TILTED, UNCALIBRATED, VERTICAL, wait_until
from tests.service.daemon import DaemonProcess, run_daemon
from tests.service.sio import SioClient, sio_client, sio_client_when_free

STOP: dict[str, object] = {"move_type": "stop", "stage_sn": VERTICAL}


def slow_move(serial: str) -> str:
    """A set_position request that takes many seconds."""
    position = {"x": 4.0, "y": 4.0, "z": 4.0, "w": 0.0}
    return json.dumps({"ManipulatorId": serial, "Position": position, "Speed": 0.05})


@asynccontextmanager
async def parallax_api(sim: ParallaxSim) -> AsyncIterator[tuple[Api, trio.Nursery]]:
    """The real actors and API on a Parallax platform in front of ``sim``, and a
    nursery for the requests a test leaves running."""
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve, "127.0.0.1", 0)
        async with open_rig(create_platform(PlatformOptions(parallax_port=port))) as rig:
            yield Api(rig, "1a2b3c4d"), nursery
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def parallax_daemon(
    sim: ParallaxSim, tmp_path: Path
) -> AsyncIterator[tuple[DaemonProcess, int, trio.Nursery]]:
    """``ephysd --platform parallax`` in front of ``sim``, ready: (process, its port, a nursery)."""
    async with trio.open_nursery() as nursery:
        parallax_port = await nursery.start(sim.serve, "127.0.0.1", 0)
        config = f'platform = "parallax"\nlisten = "127.0.0.1:0"\nparallax_port = {parallax_port}\n'
        async with run_daemon(tmp_path, config) as daemon:
            await daemon.wait_for("READY=1")
            yield daemon, await daemon.wait_listening(5), nursery
        nursery.cancel_scope.cancel()


async def start_slow_move(
    send: Callable[[str], Awaitable[object]], sim: ParallaxSim, serial: str, nursery: trio.Nursery
) -> None:
    """Send a slow set_position request with ``send``; return once the stage moves."""
    nursery.start_soon(send, slow_move(serial))
    await wait_until(lambda: sim.stages[serial].stage.moving)


def by_api(api: Api) -> Callable[[str], Awaitable[object]]:
    return lambda request: api.handle("set_position", [request])


def by_client(client: SioClient) -> Callable[[str], Awaitable[object]]:
    return lambda request: client.call("set_position", request)


def halts_logged(lines: list[str], serial: str) -> int:
    return sum(line.endswith(f"manipulator {serial} stopped") for line in lines)


def test_parallax_declares_a_halt_budget_longer_than_the_default_deadline() -> None:
    assert create_platform(PlatformOptions()).info.halt_budget_s > ActorLimits().halt_timeout_s


async def test_a_stop_waits_for_parallax_to_confirm_longer_than_the_default_halt_deadline() -> None:
    sim = ParallaxSim()
    async with parallax_api(sim) as (api, nursery):
        await start_slow_move(by_api(api), sim, VERTICAL, nursery)
        with trio.fail_after(10):
            assert await api.handle("stop", [VERTICAL]) == ""
        assert STOP in sim.puts
        assert not sim.stages[VERTICAL].stage.moving


async def test_a_stop_parallax_keeps_dropping_is_answered_with_an_error_naming_the_stage() -> None:
    sim = ParallaxSim()
    async with parallax_api(sim) as (api, nursery):
        await start_slow_move(by_api(api), sim, VERTICAL, nursery)
        sim.lookup_fails = True
        with trio.fail_after(10):
            errors = await api.handle("stop_all", [])
        assert f"Manipulator {VERTICAL} did not stop after 2 stop commands" in errors
        # The idle stages' stops were dropped too, but they stood still.
        assert UNCALIBRATED not in errors and TILTED not in errors
        assert sim.stages[VERTICAL].stage.moving
        sim.lookup_fails = False
        with trio.fail_after(10):
            assert await api.handle("stop", [VERTICAL]) == ""
        assert not sim.stages[VERTICAL].stage.moving


async def test_set_depth_on_a_tilted_probe_answers_the_requested_depth() -> None:
    async with parallax_api(ParallaxSim()) as (api, _):
        start = json.loads(await api.handle("get_position", [TILTED]))["Position"]["w"]
        request = json.dumps({"ManipulatorId": TILTED, "Depth": start + 0.2, "Speed": 1})
        with trio.fail_after(10):
            answer = json.loads(await api.handle("set_depth", [request]))
        assert answer["Error"] == ""
        assert abs(answer["Depth"] - (start + 0.2)) <= 0.01


async def test_controller_loss_and_the_estop_each_stop_a_moving_parallax_stage(
    tmp_path: Path,
) -> None:
    sim = ParallaxSim()
    async with parallax_daemon(sim, tmp_path) as (daemon, port, nursery):
        async with sio_client(port) as client:
            await start_slow_move(by_client(client), sim, VERTICAL, nursery)
        await daemon.wait_for_line("all motion stopped after the controller left")
        assert sim.puts.count(STOP) >= 1
        assert not sim.stages[VERTICAL].stage.moving

        stops_before = sim.puts.count(STOP)
        async with sio_client_when_free(port) as client:
            await start_slow_move(by_client(client), sim, VERTICAL, nursery)
            daemon.signal(signal.SIGUSR1)
            await daemon.wait_for_line("EMERGENCY STOP")
            await wait_until(lambda: not sim.stages[VERTICAL].stage.moving)
            assert sim.puts.count(STOP) > stops_before
            # Each halt answers once the stage has stood still: the disconnect's, then this.
            await wait_until(lambda: halts_logged(daemon.lines, VERTICAL) == 2, 10)
        assert not any("failed to halt" in line for line in daemon.lines), daemon.output()


async def test_sigterm_stops_a_moving_parallax_stage_and_waits_for_it_to_take(
    tmp_path: Path,
) -> None:
    sim = ParallaxSim()
    async with (
        parallax_daemon(sim, tmp_path) as (daemon, port, nursery),
        sio_client(port) as client,
    ):
        await start_slow_move(by_client(client), sim, TILTED, nursery)
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait_exit(15) == 0, daemon.output()
    assert {"move_type": "stop", "stage_sn": TILTED} in sim.puts
    assert not sim.stages[TILTED].stage.moving
    # Confirmed before the daemon went on to exit: the halt answered, and in time.
    assert halts_logged(daemon.lines, TILTED) == 1, daemon.output()
    assert any("every motion stopped" in line for line in daemon.lines), daemon.output()
