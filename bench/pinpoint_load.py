"""Pinpoint's polling shape against ephysd and upstream Ephys Link 2.3.6, side by side.

    .venv/bin/python bench/pinpoint_load.py [--seconds 10] [--rounds 4] [--only ephysd,upstream]

Pinpoint echoes each manipulator's position by asking for it again from the
callback of the previous answer: one ``get_position`` in flight per
manipulator, back to back, as fast as answers come. This bench does the same
with python-socketio's AsyncClient over WebSocket (8 manipulators, ids "0" to
"7" on both fake platforms), against

- ephysd with its *default* settings (``python -m ephysd.cli --platform fake``,
  no config file: the request budget is what a rig gets out of the box), and
- upstream ephys-link 2.3.6 with its fake platform (bench/_upstream.py).

Each server gets ``--seconds`` of load in total, split into ``--rounds``
interleaved rounds. Every answer is parsed as Pinpoint parses it: an answer
with an empty ``Error`` is served, anything else (a refusal such as
``{"error": "Too many requests."}``, a timeout) is an error answer. Printed per
server: answers served per second, error answers, round-trip p50/p99. The
issue-13 targets: zero error answers from ephysd, and ephysd's served rate at
least upstream's. Exit status 1 when ephysd gave an error answer or a server
could not be measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field

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
    percentile,
    print_table,
    running,
    verdict,
)
from _upstream import SERVER_ENV, ensure_upstream, upstream_argv

SERVERS = {"ephysd": "ephysd (fake, default settings)", "upstream": "upstream 2.3.6 (fake)"}
MANIPULATORS = [str(i) for i in range(8)]
WARMUP_S = 1.0


@dataclass
class Tally:
    name: str
    served: int = 0
    errors: int = 0
    first_error: str = ""
    seconds: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    pid: int = 0
    latencies_s: list[float] = field(default_factory=list)
    failure: str = ""

    @property
    def served_per_s(self) -> float:
        return self.served / self.seconds if self.seconds else 0.0


def error_of(answer: object) -> str:
    """'' for a position Pinpoint would accept, else what it would log."""
    if not isinstance(answer, str) or not answer:
        return f"invalid response: {answer!r}"
    try:
        body = json.loads(answer)
    except ValueError:
        return f"not JSON: {answer[:80]!r}"
    if not isinstance(body, dict) or not isinstance(body.get("Position"), dict):
        return f"no Position: {answer[:80]}"
    return str(body.get("Error") or "")


async def poll(client: socketio.AsyncClient, mid: str, until: float, tally: Tally | None) -> None:
    """One manipulator's echo loop: ask again as soon as the answer is in."""
    while time.perf_counter() < until:
        sent = time.perf_counter()
        try:
            answer = await client.call("get_position", mid, timeout=REPLY_TIMEOUT_S)
        except socketio.exceptions.TimeoutError:
            answer = None
        if tally is None:
            continue
        tally.latencies_s.append(time.perf_counter() - sent)
        error = error_of(answer)
        if error:
            tally.errors += 1
            tally.first_error = tally.first_error or error
        else:
            tally.served += 1


async def load(client: socketio.AsyncClient, seconds: float, tally: Tally | None) -> None:
    started = time.perf_counter()
    cpu = time.process_time()
    server_cpu = cpu_seconds(tally.pid) if tally is not None else 0.0
    until = started + seconds
    await asyncio.gather(*(poll(client, mid, until, tally) for mid in MANIPULATORS))
    if tally is not None:
        tally.seconds += time.perf_counter() - started
        tally.client_cpu_s += time.process_time() - cpu
        tally.server_cpu_s += cpu_seconds(tally.pid) - server_cpu


async def measure(
    ports: dict[str, int], tallies: dict[str, Tally], args: argparse.Namespace
) -> None:
    clients: dict[str, socketio.AsyncClient] = {}
    try:
        for kind, port in ports.items():
            client = socketio.AsyncClient(reconnection=False)
            await client.connect(
                f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=10
            )
            clients[kind] = client
            await load(client, WARMUP_S, None)
        for _ in range(args.rounds):
            for kind, client in clients.items():
                await load(client, args.seconds / args.rounds, tallies[kind])
    finally:
        for client in clients.values():
            await client.disconnect()


def spec_for(kind: str, port: int) -> ServerSpec:
    argv = ephysd_fake_argv(port) if kind == "ephysd" else upstream_argv(port)
    return ServerSpec(SERVERS[kind], argv, port, env=SERVER_ENV)


def report(tallies: dict[str, Tally], args: argparse.Namespace) -> int:
    print(f"pinpoint_load: {machine_conditions()}")
    print(
        f"python-socketio over WebSocket, {len(MANIPULATORS)} manipulators each polled back to"
        f" back (one get_position in flight each), {args.seconds:g} s per server"
        f" in {args.rounds} interleaved round(s)\n"
    )
    rows = []
    for t in tallies.values():
        if t.failure:
            rows.append([t.name, "-", "-", "-", "-", "-"])
            continue
        ms = sorted(v * 1000 for v in t.latencies_s)
        answers = max(1, len(t.latencies_s))
        rows.append(
            [
                t.name,
                f"{t.served_per_s:,.0f}",
                f"{t.served:,}",
                f"{t.errors:,}",
                f"{percentile(ms, 50):.2f}" if ms else "-",
                f"{percentile(ms, 99):.2f}" if ms else "-",
                f"{t.server_cpu_s * 1e6 / answers:.0f}",
                f"{t.client_cpu_s * 1e6 / answers:.0f}",
            ]
        )
    headers = ["server", "served/s", "served", "error answers", "p50 ms", "p99 ms"]
    print_table([*headers, "server CPU us/answer", "client CPU us/answer"], rows)
    for t in tallies.values():
        if t.failure:
            print(f"{t.name}: not measured: {t.failure}")
        elif t.errors:
            print(f"{t.name}: first error answer: {t.first_error}")
    ours, theirs = tallies.get("ephysd"), tallies.get("upstream")
    status = 0
    if ours is not None:
        ok = not ours.failure and ours.errors == 0 and ours.served > 0
        print(f"\nzero error answers from ephysd: {verdict(ok)}")
        status = 0 if ok else 1
    if ours is not None and theirs is not None and not ours.failure and not theirs.failure:
        ratio = ours.served_per_s / theirs.served_per_s if theirs.served_per_s else float("inf")
        print(f"served/s ephysd / upstream: {ratio:.2f}x  (target >= 1.00x: {verdict(ratio >= 1)})")
    if any(t.failure for t in tallies.values()):
        status = 1
    return status


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="load per server (10)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (4)")
    parser.add_argument("--only", default="", help="comma-separated subset of: ephysd,upstream")
    parser.add_argument("--no-install", action="store_true", help="skip upstream unless installed")
    args = parser.parse_args(argv)
    if not (0.5 <= args.seconds <= 600 and 1 <= args.rounds <= 50):
        parser.error("--seconds must be 0.5..600 and --rounds 1..50")
    wanted = [k.strip() for k in args.only.split(",") if k.strip()] or list(SERVERS)
    if any(k not in SERVERS for k in wanted):
        parser.error(f"--only: choose from {list(SERVERS)}")
    tallies = {kind: Tally(SERVERS[kind]) for kind in wanted}
    if "upstream" in tallies:
        why = ensure_upstream(not args.no_install)
        if why:
            tallies["upstream"].failure = why
    log_dir = make_log_dir()
    live = [kind for kind in wanted if not tallies[kind].failure]
    specs = {kind: spec_for(kind, free_port()) for kind in live}
    try:
        with contextlib.ExitStack() as stack:
            for kind in live:
                tallies[kind].pid = stack.enter_context(running(specs[kind], log_dir)).pid
            ports = {kind: specs[kind].port for kind in live}
            asyncio.run(measure(ports, tallies, args))
    except (BenchError, OSError, socketio.exceptions.SocketIOError) as exc:
        for kind in live:
            tallies[kind].failure = tallies[kind].failure or str(exc)
    print(f"(server logs in {log_dir})", file=sys.stderr)
    return report(tallies, args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
