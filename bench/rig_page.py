"""What the rig page's observers cost the daemon: push CPU, and Pinpoint's polling rate.

    .venv/bin/python bench/rig_page.py [--seconds 10] [--rounds 3] [--observers 8]

Starts ``ephysd --platform fake`` (8 manipulators) and keeps all 8 moving for
the whole run (back and forth, 15 mm at 1 mm/s), driven by one python-socketio
client that also does Pinpoint's polling. Each round measures two conditions,
in alternating order so background load hits both alike:

- **no observers**, and
- **N observers** connected (raw WebSocket clients in a process of their own,
  as browsers would be, counting the ``rig_state`` events they receive).

In each condition, two phases of ``--seconds`` each:

1. *push cost*: the daemon's CPU (user+system, /proc) while the probes move
   and nobody polls, so the publisher reads every device itself and pushes
   every change: the worst case for pushes. The difference between the
   conditions is what the observers cost, in % of one core (target < 5%).
2. *Pinpoint-shaped polling*: ``bench/pinpoint_load.py``'s own load (each of
   the 8 manipulators polled back to back with one ``get_position`` in
   flight, python-socketio's AsyncClient over WebSocket, every answer
   checked) on the same client; the served rate with observers must lose
   less than 10% against the rate without.

Figures are printed, never asserted; exit status 1 if an answer was wrong or
a client failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import socketio
from _common import (
    REPLY_TIMEOUT_S,
    BenchError,
    ServerSpec,
    cpu_seconds,
    ephysd_fake_argv,
    free_port,
    machine_conditions,
    make_log_dir,
    median,
    running,
)
from _rawws import ClientError, RawSioClient
from pinpoint_load import MANIPULATORS, Tally, load

TRAVEL_MM = 15.0
MOVE_SPEED = 1.0
OBSERVER_AUTH = json.dumps({"role": "observer", "name": "bench"})


# --- the observers' process -------------------------------------------------------


async def observe(port: int, count: int) -> None:
    """Connect ``count`` observers, say "ready", then report events until stdin closes."""
    clients = [await RawSioClient.open(port, REPLY_TIMEOUT_S, OBSERVER_AUTH) for _ in range(count)]
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    await loop.run_in_executor(None, sys.stdin.readline)  # the bench says when
    elapsed = time.perf_counter() - started
    print(json.dumps({"events": [c.events for c in clients], "seconds": elapsed}), flush=True)
    for client in clients:
        await client.close()


class Observers:
    """The observers' subprocess, for one condition."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Observers:
        if self.count:
            argv = [sys.executable, __file__, "--observe", str(self.port), str(self.count)]
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline().strip()
            if line != "ready":
                raise BenchError(f"observers did not start: {line!r}")
        return self

    def report(self) -> tuple[list[int], float]:
        """(rig_state events per observer, seconds connected); ends the process."""
        if self.proc is None:
            return [], 0.0
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        self.proc.wait(timeout=10)
        self.proc = None
        data = json.loads(line)
        return list(data["events"]), float(data["seconds"])

    def __exit__(self, *_exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)


# --- the controller: moves all the time, polls when asked -----------------------------


class Controller:
    def __init__(self, client: Any, pid: int) -> None:
        self.client = client
        self.pid = pid
        self.wrong: list[str] = []
        # Every x seen per manipulator: proof that the probes moved.
        self.seen_x: dict[str, set[float]] = {m: set() for m in MANIPULATORS}

    async def keep_moving(self, manipulator_id: str) -> None:
        """Back and forth over the travel, one leg after the other, until cancelled."""
        x = TRAVEL_MM
        while True:
            request = {
                "ManipulatorId": manipulator_id,
                "Position": {"x": x, "y": x / 2, "z": x / 3, "w": x / 4},
                "Speed": MOVE_SPEED,
            }
            answer = await self.client.call("set_position", json.dumps(request), timeout=60)
            if json.loads(answer).get("Error"):
                self.wrong.append(f"set_position: {answer[:200]}")
            x = 0.0 if x else TRAVEL_MM

    async def poll(self, seconds: float) -> Tally:
        """pinpoint_load's polling for ``seconds``; positions noted before and after."""
        await self.note_positions()
        tally = Tally("ephysd", pid=self.pid)
        await load(self.client, seconds, tally)
        if tally.errors or tally.failure:
            self.wrong.append(f"get_position: {tally.errors} errors, e.g. {tally.first_error!r}")
        await self.note_positions()
        return tally

    async def note_positions(self) -> None:
        for manipulator_id in MANIPULATORS:
            answer = await self.client.call("get_position", manipulator_id, timeout=5)
            self.seen_x[manipulator_id].add(json.loads(answer)["Position"]["x"])


def cpu_over(pid: int, seconds: float) -> float:
    """The daemon's CPU use over the next ``seconds``, in % of one core."""
    before, started = cpu_seconds(pid), time.perf_counter()
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - before) / (time.perf_counter() - started)


async def measure(
    port: int, pid: int, args: argparse.Namespace
) -> dict[str, dict[str, list[float]]]:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=10)
    controller = Controller(client, pid)
    figures: dict[str, dict[str, list[float]]] = {
        name: {"cpu": [], "rate": [], "pushes": [], "poll_cpu": [], "per_read": []}
        for name in ("none", "observers")
    }
    movers = [asyncio.ensure_future(controller.keep_moving(m)) for m in MANIPULATORS]
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(1.0)  # every probe under way
        for round_ in range(args.rounds):
            order = ["none", "observers"] if round_ % 2 == 0 else ["observers", "none"]
            for name in order:
                count = args.observers if name == "observers" else 0
                with Observers(port, count) as observers:
                    await asyncio.sleep(0.5)
                    cpu = await loop.run_in_executor(None, cpu_over, pid, args.seconds)
                    tally = await controller.poll(args.seconds)
                    served, elapsed, busy = tally.served, tally.seconds, tally.server_cpu_s
                    rate = tally.served_per_s
                    events, connected = observers.report()
                figures[name]["cpu"].append(cpu)
                figures[name]["rate"].append(rate)
                figures[name]["poll_cpu"].append(100 * busy / elapsed)
                figures[name]["per_read"].append(1e6 * busy / served if served else float("nan"))
                if events:
                    figures[name]["pushes"].append(sum(events) / len(events) / connected)
                print(
                    f"  round {round_ + 1} {name:9s}: daemon CPU {cpu:5.1f}% of a core while"
                    f" moving; polling served {rate:8,.0f}/s at {100 * busy / elapsed:4.1f}% CPU"
                    + (f"; {min(events)}-{max(events)} rig_state each" if events else ""),
                    flush=True,
                )
    finally:
        for mover in movers:
            mover.cancel()
        await asyncio.gather(*movers, return_exceptions=True)
        await client.call("stop_all", timeout=REPLY_TIMEOUT_S)
        await client.disconnect()
    if controller.wrong:
        raise BenchError(
            f"{len(controller.wrong)} wrong answers, e.g. {controller.wrong[0]!r}: figures void"
        )
    still = [m for m, xs in controller.seen_x.items() if len(xs) < 2]
    if still:
        raise BenchError(f"manipulators {still} never moved while polled: figures void")
    return figures


def main(argv: list[str]) -> int:
    if argv[:1] == ["--observe"]:
        asyncio.run(observe(int(argv[1]), int(argv[2])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase (10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both conditions (3)")
    parser.add_argument("--observers", type=int, default=8, help="observers connected (8)")
    args = parser.parse_args(argv)
    if not (1 <= args.seconds <= 120 and 1 <= args.rounds <= 20 and 1 <= args.observers <= 64):
        parser.error("--seconds 1..120, --rounds 1..20, --observers 1..64")
    port = free_port()
    spec = ServerSpec("ephysd (fake)", ephysd_fake_argv(port), port)
    print(f"rig_page: {machine_conditions()}")
    print(
        f"8 manipulators moving at {MOVE_SPEED} mm/s; {args.observers} observers vs none;"
        f" {args.rounds} rounds of {args.seconds:g} s per phase"
    )
    try:
        with running(spec, make_log_dir()) as server:
            figures = asyncio.run(measure(port, server.pid, args))
    except (
        BenchError,
        ClientError,
        OSError,
        TimeoutError,
        socketio.exceptions.SocketIOError,
    ) as exc:
        print(f"rig_page: FAILED: {exc}")
        return 1
    none, watched = figures["none"], figures["observers"]
    cost = median(watched["cpu"]) - median(none["cpu"])
    loss = 100 * (1 - median(watched["rate"]) / median(none["rate"]))
    print(
        f"daemon CPU while moving (median): {median(none['cpu']):.1f}% without observers,"
        f" {median(watched['cpu']):.1f}% with {args.observers}"
    )
    print(f"push cost: {cost:.1f}% of one core (target < 5%)")
    print(
        f"rig_state per observer: {median(watched['pushes']):.1f}/s"
        " (moving probes: between 5 and 20)"
    )
    print(
        f"Pinpoint-shaped polling (median): {median(none['rate']):,.0f}/s without observers,"
        f" {median(watched['rate']):,.0f}/s with; loss {loss:.1f}% (target < 10%)"
    )
    print(
        f"daemon CPU while polling (median): {median(none['poll_cpu']):.1f}% of a core without"
        f" observers, {median(watched['poll_cpu']):.1f}% with; per served read"
        f" {median(none['per_read']):.0f} us vs {median(watched['per_read']):.0f} us"
        " (the load-independent view of the same question)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
