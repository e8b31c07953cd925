"""Sutter bus through the simulator's pty: reads/s per drive (idle, and while another drive
moves), read wait and position age during moves, and stop -> ^C latency through ephysd.

Run: ``.venv/bin/python bench/sutter.py [--seconds 3] [--stops 200]``

Part 1, at the driver level (what actors call): one simulated controller with
two drives as its own process (``python -m drivers.sutter.sim``), the
platform's bus in the bench process. Both drives poll their position as fast
as they can, first while idle, then while drive 1 runs a long move (segments
of ~0.5 s) and keeps polling too. Every read's answer is checked (a position,
and for the moving drive one that changes). Printed: reads/s per drive, the
longest wait for a read, and the oldest position a read returned (a read's
answer is measured when the bus sends ``C``, so its age is its wait).

Part 2, through the daemon: ``ephysd --platform sutter --port <pty>`` as a
subprocess with an in-process simulator, and a raw Socket.IO client on a
WebSocket in the bench process. ``set_depth`` starts a long move on drive 1
and ``stop`` is sent at a random moment; the figure is from just before the
``stop`` frame is written by the client to the simulator reading ^C (same
clock). Stops are split by what the drive was doing when the stop was sent:
in motion (the 5 ms target); at rest but with ^C still sent (the stop came
in the 35 ms pause inside an ``S`` packet, which is then completed with the
drive's own position and followed by ^C, or just as the next segment began);
at rest between two segments (no byte is needed); or in motion but with its
segment ending by itself before the stop reached the bus (no byte either).
For every stop the distance the drive travelled after the stop was sent is
checked too.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import trio
from _common import percentile
from _serial import RawSocketIO, daemon_session, simulators

from drivers.base import PlatformOptions
from drivers.sutter.drive import SutterDrive
from drivers.sutter.platform import SutterPlatform
from drivers.sutter.sim import SutterSim

START_W = 12.5


class ReadStats:
    def __init__(self) -> None:
        self.count = 0
        self.longest_wait = 0.0
        self.values: set[float] = set()


async def poll(drive: SutterDrive, stats: ReadStats, seconds: float) -> None:
    with trio.move_on_after(seconds):
        while True:
            t0 = time.perf_counter()
            position = await drive.position()
            stats.longest_wait = max(stats.longest_wait, time.perf_counter() - t0)
            assert len(position) == 4 and 0 <= position[3] <= 25, position
            stats.values.add(position[3])
            stats.count += 1


async def move_for(drive: SutterDrive, seconds: float) -> None:
    with trio.move_on_after(seconds):
        await drive.move_depth(START_W + 5.0, 0.3)


async def read_rates(drives: list[SutterDrive], seconds: float, mover: bool) -> list[ReadStats]:
    stats = [ReadStats() for _ in drives]
    async with trio.open_nursery() as nursery:
        for drive, s in zip(drives, stats, strict=True):
            nursery.start_soon(poll, drive, s, seconds)
        if mover:
            nursery.start_soon(move_for, drives[0], seconds)
    if mover:
        assert len(stats[0].values) > seconds, "the moving drive's reads did not change"
    return stats


def report(label: str, drives: list[SutterDrive], stats: list[ReadStats], seconds: float) -> None:
    for drive, s in zip(drives, stats, strict=True):
        print(
            f"{label}: drive {drive.id}: {s.count / seconds:.0f} reads/s, longest wait "
            f"(= oldest position returned) {s.longest_wait * 1000:.1f} ms"
        )


async def driver_level(args: argparse.Namespace, workdir: Path) -> None:
    sim = simulators("drivers.sutter.sim", 1, workdir, "--drives", "1,2")
    async with sim as paths, trio.open_nursery() as nursery:
        platform = SutterPlatform(PlatformOptions(serial_ports=(paths[0],)))
        drives = [d for d in await nursery.start(platform.run) if isinstance(d, SutterDrive)]
        for drive in drives:
            await drive.open()
        idle = await read_rates(drives, args.seconds, mover=False)
        report("idle", drives, idle, args.seconds)
        moving = await read_rates(drives, args.seconds, mover=True)
        report("drive 1 moving", drives, moving, args.seconds)
        await drives[0].move_depth(START_W, 1.3)
        nursery.cancel_scope.cancel()


async def daemon_stops(stops: int, workdir: Path) -> None:
    sim = SutterSim(link=str(workdir / "sutter-daemon"), drives=(1, 2))
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        async with daemon_session(["--platform", "sutter", "--port", sim.path]) as (_, client):
            results = await _stop_loop(sim, client, stops)
        nursery.cancel_scope.cancel()
    assert not sim.violations, sim.violations
    for kind, values in results.items():
        latencies = [ms for ms, _ in values]
        travelled = max((um for _, um in values), default=0.0)
        if not values:
            print(f"via ephysd + Socket.IO: stops {kind}: none")
        elif all(ms is None for ms in latencies):
            print(
                f"via ephysd + Socket.IO: stops {kind}: {len(values)}, no ^C needed; "
                f"max travel after the stop {travelled:.1f} um"
            )
        else:
            ms = [x for x in latencies if x is not None]
            print(
                f"via ephysd + Socket.IO: stop sent -> ^C read by the simulator, {len(ms)} stops "
                f"{kind}: p50 {percentile(ms, 50):.3f} ms, p99 {percentile(ms, 99):.3f} ms, "
                f"max {max(ms):.3f} ms; max travel after the stop {travelled:.1f} um"
            )
    print(f"simulator: {len(sim.violations)} protocol violations")


async def _stop_loop(
    sim: SutterSim, client: RawSocketIO, stops: int
) -> dict[str, list[tuple[float | None, float]]]:
    results: dict[str, list[tuple[float | None, float]]] = {
        "in motion": [],
        "at rest, ^C still sent": [],
        "between segments": [],
        "as a segment ended by itself": [],
    }
    rng = random.Random(15)
    for _ in range(stops):
        here_mm = sim.position(1)[0] / 16000  # w is the native x axis
        target = START_W - 4.0 if here_mm > START_W else START_W + 4.0  # at least 4 mm away
        request = json.dumps({"ManipulatorId": "1", "Depth": target, "Speed": 1.0})
        move = await client.send("set_depth", request)
        await trio.sleep(0.1 + rng.random() * 0.6)
        seen = len(sim.interrupts)
        t0 = trio.current_time()
        at_stop = sim.position(1)
        in_motion = sim.moving == 1
        stop = await client.send("stop", "1")
        assert await client.answer(stop) == [""], "stop failed"
        answer = await client.answer(move)
        assert "did not reach target depth" in str(answer), answer
        travelled_um = max(abs(a - b) for a, b in zip(sim.position(1), at_stop, strict=True)) / 16
        interrupts = [t for t in sim.interrupts[seen:] if t >= t0]
        latency = (interrupts[0] - t0) * 1000 if interrupts else None
        if in_motion and latency is None:
            # The segment's own CR beat the stop to the bus: the drive had stopped by itself.
            results["as a segment ended by itself"].append((None, travelled_um))
        elif in_motion:
            results["in motion"].append((latency, travelled_um))
        elif latency is not None:
            results["at rest, ^C still sent"].append((latency, travelled_um))
        else:
            results["between segments"].append((None, travelled_um))
    return results


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="ephysd-bench-sutter-") as tmp:
        await driver_level(args, Path(tmp))
        if args.stops:
            await daemon_stops(args.stops, Path(tmp))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--stops", type=int, default=200, help="0 skips the daemon measurement")
    trio.run(main, parser.parse_args())
