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
import json
import tempfile
from pathlib import Path

import trio
from _serial import (
    WireClock,
    driver_stops,
    latency_summary,
    open_and_read,
    serial_bench_arguments,
    simulators,
    through_the_daemon,
)

from drivers.base import Vector
from drivers.scientifica.driver import ScientificaManipulator
from drivers.scientifica.sim import ScientificaSim

STOP = b"STOP\r"
TARGETS: list[Vector] = [(10.0, 8.0, 10.0, 0.0), (10.0, 12.0, 10.0, 0.0)]


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
            await daemon_level(args.stops_via_daemon, Path(tmp))


def _far_move(i: int) -> str:
    """A set_position that a stop will interrupt: 2 mm at 1 mm/s, back and forth."""
    target = {"x": 10.0, "y": 8.0 if i % 2 == 0 else 12.0, "z": 10.0, "w": 0.0}
    return json.dumps({"ManipulatorId": "1", "Position": target, "Speed": 1.0})


async def daemon_level(stops: int, workdir: Path) -> None:
    sim = ScientificaSim(link=str(workdir / "scientifica-daemon"))
    await through_the_daemon(
        sim,
        "scientifica",
        stops,
        transactions_per_read=1,
        far_move=_far_move,
        halt="STOP",
        halts=lambda: [r.time for r in sim.received if r.word == "STOP"],
    )


if __name__ == "__main__":
    description = __doc__.splitlines()[0] if __doc__ else None
    trio.run(main, serial_bench_arguments(description).parse_args())
