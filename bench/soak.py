"""Soak: one client at a steady request rate (moves, stops, reads) against the daemon.

Runs ``ephysd`` on the simulated rig (or attaches to a running one with
``--port`` and ``--pid``), connects one raw Socket.IO client and sends
requests open-loop at ``--rate`` per second for ``--seconds``: mostly
``get_position``, plus moves that are stopped, superseded or finish, and
``stop``/``stop_all``. It prints the daemon's RSS and open descriptors at the
start, every tenth of the run and at the end, and every answer that is an
error other than the ones a stopped or superseded move must give.

    .venv/bin/python bench/soak.py --seconds 600

Exit status 1 if an unexpected error answer, a missing ack or RSS growth of
5 MB or more was seen. Not part of ``make test``: it takes minutes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

HOST = "127.0.0.1"
ACK_TIMEOUT_S = 10.0
MAX_IN_FLIGHT = 256
RSS_GROWTH_LIMIT_KIB = 5 * 1024
_LISTENING = re.compile(rb"listening on http://[^ ]*:(\d+)")
# Answers a stopped or superseded move is required to give: not errors of the daemon.
_EXPECTED = ("did not reach target", "was superseded")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    expected_errors: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    missing: int = 0

    def record(self, event: str, answer: Any) -> None:
        self.answered[event] += 1
        error = _error_of(answer)
        if not error:
            return
        if any(text in error for text in _EXPECTED):
            self.expected_errors[event] += 1
        else:
            self.unexpected.append(f"{event}: {error}")
            print(f"  ERROR ANSWER {event}: {error}", flush=True)


def _error_of(answer: Any) -> str:
    """The error text an ack carries ("" for success), whatever the event's shape."""
    if not isinstance(answer, str):
        return f"non-string answer {answer!r}"
    if not answer.startswith("{"):
        return answer if answer and not re.fullmatch(r"\d+\.\d+\.\d+", answer) else ""
    try:
        decoded = json.loads(answer)
    except ValueError:
        return f"bad JSON {answer[:100]!r}"
    return str(decoded.get("Error") or decoded.get("error") or "")


class Client:
    """Socket.IO over one WebSocket: EVENT with ack id out, ACK in, pings answered."""

    def __init__(self, ws: WebSocketConnection, tally: Tally) -> None:
        self.ws = ws
        self.tally = tally
        self.ids = itertools.count()
        self.pending: dict[int, tuple[str, float]] = {}
        self.room = trio.Semaphore(MAX_IN_FLIGHT)
        self.all_answered = trio.Event()

    async def join(self) -> None:
        opening = await self.ws.get_message()
        assert isinstance(opening, str) and opening.startswith("0{"), opening
        await self.ws.send_message("40")
        while (answer := await self.ws.get_message()) == "2":
            await self.ws.send_message("3")
        if not (isinstance(answer, str) and answer.startswith("40")):
            raise SystemExit(f"soak: connection refused: {answer!r}")

    async def call_now(self, event: str) -> Any:
        """One call answered before the soak starts (no reader task running yet)."""
        ack_id = next(self.ids)
        await self.ws.send_message(f"42{ack_id}" + json.dumps([event]))
        prefix = f"43{ack_id}["
        while not (isinstance(message := await self.ws.get_message(), str)) or not (
            message.startswith(prefix)
        ):
            if message == "2":
                await self.ws.send_message("3")
        return json.loads(message[len(prefix) - 1 :])[0]

    async def drained(self) -> None:
        """Wait until every request sent has been answered (or declared missing)."""
        while self.pending:
            self.all_answered = trio.Event()
            await self.all_answered.wait()

    async def send(self, event: str, *args: Any) -> None:
        await self.room.acquire()
        ack_id = next(self.ids)
        self.pending[ack_id] = (event, trio.current_time())
        self.tally.sent[event] += 1
        await self.ws.send_message(f"42{ack_id}" + json.dumps([event, *args]))

    async def read_acks(self) -> None:
        while True:
            message = await self.ws.get_message()
            if message == "2":
                await self.ws.send_message("3")
            elif isinstance(message, str) and message.startswith("43"):
                bracket = message.index("[")
                entry = self.pending.pop(int(message[2:bracket]), None)
                if entry is not None:
                    self.room.release()
                    args = json.loads(message[bracket:])
                    self.tally.record(entry[0], args[0] if args else None)
                    if not self.pending:
                        self.all_answered.set()

    async def watch_deadlines(self) -> None:
        while True:
            await trio.sleep(1)
            now = trio.current_time()
            late = [i for i, (_, sent) in self.pending.items() if now - sent > ACK_TIMEOUT_S]
            for ack_id in late:
                event, _ = self.pending.pop(ack_id)
                self.room.release()
                self.tally.missing += 1
                if not self.pending:
                    self.all_answered.set()
                self.tally.unexpected.append(f"{event}: no ack within {ACK_TIMEOUT_S:g} s")
                print(f"  NO ACK for {event} within {ACK_TIMEOUT_S:g} s", flush=True)


@dataclass(frozen=True)
class Mix:
    """What the soak asks for: manipulators, their travel (mm) and move speed (mm/s)."""

    ids: list[str]
    travel_mm: float
    speed_mm_s: float


def next_request(rng: random.Random, mix: Mix) -> tuple[str, list[Any]]:
    """The request mix: reads dominate, as with Pinpoint animating probes."""
    roll = rng.random()
    manipulator = rng.choice(mix.ids)
    if roll < 0.70:
        return "get_position", [manipulator]
    if roll < 0.85:
        target = {axis: round(rng.uniform(0, mix.travel_mm), 3) for axis in "xyzw"}
        request = {"ManipulatorId": manipulator, "Position": target, "Speed": mix.speed_mm_s}
        return "set_position", [json.dumps(request)]
    if roll < 0.95:
        return "stop", [manipulator]
    if roll < 0.97:
        return "stop_all", []
    return rng.choice(["get_manipulators", "get_version", "get_platform_info"]), []


def report_usage(label: str, pid: int, base_rss: int) -> int:
    rss = rss_kib(pid)
    print(
        f"{label:>8}: RSS {rss / 1024:7.2f} MiB ({(rss - base_rss) / 1024:+.2f}),"
        f" fds {fd_count(pid)}",
        flush=True,
    )
    return rss


async def soak(
    port: int, pid: int, seconds: float, rate: float, seed: int, speed: float | None
) -> int:
    tally = Tally()
    rng = random.Random(seed)
    url = f"ws://{HOST}:{port}/socket.io/?EIO=4&transport=websocket"
    async with open_websocket_url(url, connect_timeout=10, disconnect_timeout=2) as ws:
        client = Client(ws, tally)
        with trio.fail_after(10):
            await client.join()
            listing = json.loads(await client.call_now("get_manipulators"))
            info = json.loads(await client.call_now("get_platform_info"))
        ids = [str(m) for m in listing["Manipulators"]]
        if not ids:
            raise SystemExit("soak: the daemon reports no manipulators")
        fake = info["CliName"] == "fake"
        mix = Mix(ids, float(info["Dimensions"]["x"]), speed or (20.0 if fake else 2.0))
        print(
            f"platform {info['CliName']}: manipulators {', '.join(ids)},"
            f" moves within {mix.travel_mm:g} mm at {mix.speed_mm_s:g} mm/s",
            flush=True,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.read_acks)
            nursery.start_soon(client.watch_deadlines)
            # Warm up (allocations of the first moves), then take the baseline.
            await trio.sleep(1)
            start_rss = report_usage("start", pid, rss_kib(pid))
            fds_start = fd_count(pid)
            interval = 1 / rate
            start = trio.current_time()
            next_report = 1
            sent = 0
            while (elapsed := trio.current_time() - start) < seconds:
                event, args = next_request(rng, mix)
                await client.send(event, *args)
                sent += 1
                if elapsed >= next_report * seconds / 10:
                    report_usage(f"{next_report * 10}%", pid, start_rss)
                    next_report += 1
                # Open loop at a fixed schedule, whatever the answers do.
                await trio.sleep_until(start + sent * interval)
            sending = trio.current_time() - start
            with trio.move_on_after(ACK_TIMEOUT_S + 2):
                await client.drained()
            await client.send("stop_all")
            await trio.sleep(0.5)
            end_rss = report_usage("end", pid, start_rss)
            fds_end = fd_count(pid)
            nursery.cancel_scope.cancel()
    total = sum(tally.sent.values())
    print(f"requests: {total} sent over {sending:.1f} s ({sent / sending:.1f}/s in the loop)")
    for event in sorted(tally.sent):
        print(
            f"  {event:<18} sent {tally.sent[event]:>7}  answered {tally.answered[event]:>7}"
            f"  stopped/superseded {tally.expected_errors[event]:>6}"
        )
    print(f"unexpected error answers: {len(tally.unexpected)}; missing acks: {tally.missing}")
    for line in Counter(tally.unexpected).most_common(10):
        print(f"  {line[1]} x {line[0]}")
    growth = end_rss - start_rss
    print(f"RSS {start_rss} KiB -> {end_rss} KiB ({growth:+d} KiB); fds {fds_start} -> {fds_end}")
    ok = not tally.unexpected and growth < RSS_GROWTH_LIMIT_KIB
    print("verdict:", "OK" if ok else "FAIL")
    return 0 if ok else 1


def start_daemon(platform: str, ports: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    command = [sys.executable, "-m", "ephysd", "--platform", platform, "--listen", f"{HOST}:0"]
    for device in ports:
        command += ["--port", device]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    for _ in range(200):
        line = process.stdout.readline()
        if not line:
            break
        match = _LISTENING.search(line)
        if match:
            return process, int(match.group(1))
    process.kill()
    raise SystemExit("soak: the daemon did not start listening")


def start_bridges(count: int) -> tuple[list[subprocess.Popen[str]], list[str]]:
    """Simulated New Scale bridges (one pty each), as separate processes."""
    sims, paths = [], []
    for _ in range(count):
        sim = subprocess.Popen(
            [sys.executable, "-m", "drivers.newscale.sim", "--no-stdin"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert sim.stdout is not None
        line = sim.stdout.readline()
        if not line.startswith("PTY "):
            raise SystemExit(f"soak: simulator did not start: {line!r}")
        sims.append(sim)
        paths.append(line.split()[1])
    return sims, paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="duration (60)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (200)")
    parser.add_argument("--seed", type=int, default=1, help="request mix seed")
    parser.add_argument(
        "--platform",
        choices=("fake", "newscale"),
        default="fake",
        help="simulated rig to start: fake (8 manipulators) or newscale (pty simulators)",
    )
    parser.add_argument("--bridges", type=int, default=2, help="newscale simulators (2)")
    parser.add_argument("--speed", type=float, help="move speed, mm/s (fake 20, newscale 2)")
    parser.add_argument("--port", type=int, help="attach to a daemon on this port ...")
    parser.add_argument("--pid", type=int, help="... whose process id is this")
    args = parser.parse_args(argv)
    if (args.port is None) != (args.pid is None):
        parser.error("--port and --pid go together")
    process = drain = None
    sims: list[subprocess.Popen[str]] = []
    if args.port is None:
        ports: list[str] = []
        if args.platform == "newscale":
            sims, ports = start_bridges(args.bridges)
        process, port = start_daemon(args.platform, ports)
        pid = process.pid
        # Keep draining the daemon's log so it never blocks on a full pipe.
        drain = subprocess.Popen(["cat"], stdin=process.stdout, stdout=subprocess.DEVNULL)
    else:
        port, pid = args.port, args.pid
    print(f"soak: daemon pid {pid} on {HOST}:{port}, {args.rate:g} req/s for {args.seconds:g} s")
    try:
        return trio.run(soak, port, pid, args.seconds, args.rate, args.seed, args.speed)
    except ConnectionClosed as exc:
        print(f"soak: the daemon closed the connection: {exc}")
        return 1
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            try:
                status = process.wait(10)
                print(f"daemon exit status after SIGTERM: {status}")
            except subprocess.TimeoutExpired:
                process.kill()
                print("daemon did not exit within 10 s of SIGTERM")
            if drain is not None:
                drain.wait(5)
        for sim in sims:
            sim.terminate()
            sim.wait(5)


if __name__ == "__main__":
    sys.exit(main())
