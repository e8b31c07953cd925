"""Scientifica driver through its simulator's pty: reads/s, CPU per transaction, stop latency.

Run: ``.venv/bin/python bench/scientifica.py [--manipulators 2] [--stops 200]``

Each simulated controller runs as its own process (``python -m
drivers.scientifica.sim``, an IVM on firmware 3), so the figures are the
driver's own round trips over a real pty. A pty has no baud rate: on a real
line a ``P`` transaction costs ~30 ms more at 9600 baud and ~8 ms at 38400
(the bytes on the wire), which these figures leave out on purpose.

Driver level (what an actor calls): position reads per second per
manipulator with all of them reading at once (one ``P`` transaction per
read) and the bench process's CPU per transaction; then the time from
cancelling a move's scope (what ``stop`` does) to the transport writing
``STOP``, from its wire log, for moves at full speed and for stepped (slow)
moves.

Then through the daemon: ``ephysd --platform scientifica --port <pty>`` as a
subprocess with an in-process simulator, and a raw Socket.IO client on a
WebSocket in the bench process: ``get_position``/s one in flight with the
daemon's CPU per serial transaction, and ``stop`` during a ``set_position``:
from just before the client writes the ``stop`` frame to the simulator
reading ``STOP`` from the pty (one clock), an upper bound of "stop reaches the
daemon -> STOP written". Each stop's ack must be ``""`` and its move's ack
must say it did not reach the target, or the bench fails.
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
from pathlib import Path

import trio
from _common import cpu_seconds
from _serial import (
    WireClock,
    daemon_session,
    driver_stops,
    latency_summary,
    open_and_read,
    serial_bench_arguments,
    simulators,
    socketio_reads,
    socketio_stops,
)

from drivers.base import Vector
from drivers.scientifica.driver import ScientificaManipulator
from drivers.scientifica.sim import ScientificaSim

STOP = b"STOP\r"
TARGETS: list[Vector] = [(10.0, 8.0, 10.0, 0.0), (10.0, 12.0, 10.0, 0.0)]
READS_VIA_DAEMON = 2000


async def main(args: argparse.Namespace) -> None:
    wire = WireClock("drivers.scientifica.transport", STOP)
    with tempfile.TemporaryDirectory(prefix="ephysd-bench-scientifica-") as tmp:
        async with simulators("drivers.scientifica.sim", args.manipulators, Path(tmp)) as paths:
            devices = [ScientificaManipulator(str(i + 1), p) for i, p in enumerate(paths)]
            rates, cpu = await open_and_read(devices, args.seconds)
            for device, rate in zip(devices, rates, strict=True):
                print(
                    f"manipulator {device.id}: {rate} position reads/s "
                    f"({1000 / rate:.3f} ms per P transaction, round trip incl. the simulator)"
                )
            transactions = sum(rates) * args.seconds
            print(f"driver CPU per serial transaction: {cpu / transactions * 1000:.3f} ms")
            if args.stops:
                with wire.measuring():
                    for label, speed in (("moving at 1 mm/s", 1.0), ("stepping at 20 µm/s", 0.02)):
                        ms = await driver_stops(devices[0], args.stops, wire, TARGETS, speed)
                        print(latency_summary(f"driver: stop -> STOP written, {label}", ms))
            for device in devices:
                await device.close()
        if args.stops_via_daemon:
            await through_the_daemon(args.stops_via_daemon, Path(tmp))


def _far_move(manipulator: str, i: int) -> str:
    """A set_position that a stop will interrupt: 2 mm at 1 mm/s, back and forth."""
    target = {"x": 10.0, "y": 8.0 if i % 2 == 0 else 12.0, "z": 10.0, "w": 0.0}
    return json.dumps({"ManipulatorId": manipulator, "Position": target, "Speed": 1.0})


async def through_the_daemon(stops: int, workdir: Path) -> None:
    sim = ScientificaSim(link=str(workdir / "scientifica-daemon"))
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        flags = ["--platform", "scientifica", "--port", sim.path]
        async with daemon_session(flags) as (daemon, client):
            cpu0 = cpu_seconds(daemon.pid)
            rate = await socketio_reads(client, "1", READS_VIA_DAEMON)
            cpu = cpu_seconds(daemon.pid) - cpu0
            print(
                f"via ephysd + Socket.IO: {rate:.0f} get_position/s one in flight; daemon CPU"
                f" {cpu / READS_VIA_DAEMON * 1000:.3f} ms per serial transaction"
                " (Socket.IO + actor + driver, one P per read)"
            )
            latencies = await socketio_stops(
                client,
                stops,
                move=functools.partial(_far_move, "1"),
                halts=lambda: [r.time for r in sim.received if r.word == "STOP"],
            )
        print(
            latency_summary(
                "via ephysd + Socket.IO: stop sent -> STOP read by the simulator", latencies
            )
        )
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    description = __doc__.splitlines()[0] if __doc__ else None
    trio.run(main, serial_bench_arguments(description).parse_args())
