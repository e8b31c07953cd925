"""get_position round trip, throughput, memory and start-up of ephysd against upstream Ephys Link.

    .venv/bin/python bench/api_rtt.py [--samples 2000] [--seconds 3] [--only ephysd,floor]

Three servers, each a subprocess on 127.0.0.1, driven by the raw WebSocket
client of bench/_common.py in interleaved rounds:

- ephysd: ``python -m ephysd.cli --platform fake --listen 127.0.0.1:PORT``
  with its default settings (its request budget, 100,000 requests/s, is above
  what it serves here, and a client over it would be slowed, not refused);
- upstream: PyPI ephys-link 2.3.6 with its fake platform, from its own venv
  bench/.venv-upstream (installed on first use by bench/setup_upstream.sh;
  skipped with a message when that fails), started by bench/_upstream_launcher.py
  on a free port instead of its hard-coded 3000;
- floor: the canned-frame ``websockets`` server of protocol_rtt, acking with a
  get_position-shaped answer.

Measured: get_position p50/p99 with one call in flight, acks/s with 32 in
flight, server CPU per ack, idle RSS (process and its children, from
/proc/PID/status), RSS after the load, and the time from exec to accepting
TCP connections. Every ACK is compared with the first one (a manipulator at
rest answers the same position every time); a server that answers anything
else, such as a rate-limit refusal, has its figures discarded. Targets
(ephysd vs upstream): throughput >= 2x, p50 overhead above the floor <= 0.5x,
p99 no worse, idle RSS <= 0.6x.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import json
import sys
import time
from pathlib import Path

from _common import (
    LATENCY_HEADERS,
    REPO_DIR,
    BenchError,
    Client,
    Figures,
    RunningServer,
    ServerSpec,
    Target,
    conditions,
    ephysd_fake_argv,
    event_payload,
    exit_status,
    fmt,
    free_port,
    latency_rows,
    make_log_dir,
    measure_startup,
    median,
    open_client,
    parse_bench_args,
    pin_client,
    print_notes,
    print_profile,
    print_ratios,
    print_table,
    rss_kib,
    run_rounds,
    running,
    servers_argv,
    verdict,
)
from _upstream import SERVER_ENV, ensure_upstream, upstream_argv

SERVERS = {
    "ephysd": "ephysd (fake)",
    "upstream": "upstream ephys-link 2.3.6 (fake)",
    "floor": "floor (websockets, canned)",
}
SETTLE_S = 1.0
# What upstream's fake platform answers for a manipulator at the origin.
CANNED_POSITION = json.dumps(
    [
        json.dumps(
            {"Position": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 0.0}, "Error": ""},
            separators=(",", ":"),
        )
    ],
    separators=(",", ":"),
)


def _add_api_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--starts", type=int, default=3, help="fresh starts timed per server")
    parser.add_argument("--manipulator", default="1", help="manipulator id for get_position")
    parser.add_argument(
        "--no-install", action="store_true", help="skip upstream unless already installed"
    )


def _check_api_arguments(args: argparse.Namespace) -> str:
    return "" if 1 <= args.starts <= 50 else "--starts must be 1..50"


def parse_args(argv: list[str]) -> argparse.Namespace:
    return parse_bench_args(
        argv,
        __doc__.splitlines()[0] if __doc__ else None,
        list(SERVERS),
        "ephysd and upstream",
        _add_api_arguments,
        _check_api_arguments,
    )


def profile_path(profile_dir: str, kind: str) -> Path:
    return Path(profile_dir).resolve() / f"{kind}.prof"


def compile_ephysd() -> None:
    """Byte-compile ephysd's packages, as ``pip install`` does for an installed package.

    The checkout is an editable install, and this environment sets
    PYTHONDONTWRITEBYTECODE, so ephysd would otherwise compile its source on
    every start, which costs start-up time and leaves ~1 MiB of compiler garbage
    in its heap, while upstream runs from its venv's compiled files.
    """
    for package in ("ephysd", "protocol", "drivers"):
        compileall.compile_dir(REPO_DIR / package, quiet=1)


def spec_for(kind: str, port: int, cpu: int | None, profile_dir: str = "") -> ServerSpec:
    if kind in ("ephysd", "upstream"):
        python, *script = ephysd_fake_argv(port) if kind == "ephysd" else upstream_argv(port)
        argv = [python]
        if profile_dir:
            argv += ["-m", "cProfile", "-o", str(profile_path(profile_dir, kind))]
        argv += script
    else:
        argv = servers_argv("floor", port, "--reply", CANNED_POSITION)
    return ServerSpec(SERVERS[kind], argv, port, env=SERVER_ENV, cpu=cpu)


def position_error(ack: str) -> str:
    """The Error field of a get_position ACK ('' on success), or why the ACK is malformed."""
    try:
        args = json.loads(ack)
        body = json.loads(args[0])
        return str(body["Error"])
    except (ValueError, KeyError, IndexError, TypeError):
        return f"unexpected get_position ACK {ack[:120]!r}"


async def pick_payload(kind: str, client: Client, manipulator: str) -> str:
    """The get_position EVENT to send, checked to succeed once."""
    if kind == "floor":
        payload = event_payload("get_position", manipulator)
        client.expected = await client.call(payload)  # the canned answer, every time
        return payload
    payload = event_payload("get_position", manipulator)
    ack = await client.call(payload)
    error = position_error(ack)
    if not error:
        client.expected = ack  # a resting manipulator: every later ACK must be the same
        return payload
    # Another id scheme: take the first manipulator the server lists (ephysd only:
    # upstream never acks events without an argument).
    if kind == "ephysd":
        listed = json.loads(json.loads(await client.call(event_payload("get_manipulators")))[0])
        ids = listed.get("Manipulators") or []
        if ids:
            payload = event_payload("get_position", str(ids[0]))
            ack = await client.call(payload)
            error = position_error(ack)
            if not error:
                client.expected = ack
                return payload
    raise BenchError(f"get_position {manipulator!r} answered an error: {error}")


async def measure(
    args: argparse.Namespace, log_dir: Path, skipped: dict[str, str]
) -> tuple[dict[str, Figures], list[str]]:
    figures = {kind: Figures(SERVERS[kind], kind) for kind in args.wanted}
    live: list[str] = []
    targets: list[Target] = []
    cpu = 1 if args.pin else None
    with contextlib.ExitStack() as stack:
        # Start every server before any client connects: the start-up wait blocks the
        # event loop, and a connected session would miss its server's pings meanwhile.
        started: list[tuple[str, RunningServer]] = []
        for kind in args.wanted:
            if kind in skipped:
                figures[kind].error = skipped[kind]
                figures[kind].skipped = True
                continue
            spec = spec_for(kind, free_port(), cpu, args.profile)
            try:
                server = stack.enter_context(running(spec, log_dir))
            except BenchError as exc:
                # Upstream that will not start is skipped; ours that will not is a failure.
                figures[kind].error = str(exc)
                figures[kind].skipped = kind == "upstream"
                continue
            figures[kind].extra["startup_first_s"] = server.startup_s
            started.append((kind, server))
        await asyncio.sleep(SETTLE_S)
        for kind, server in started:
            figures[kind].extra["idle_rss_kib"] = rss_kib(server.pid)
        for kind, server in started:
            try:
                client = await open_client(server.spec.port, args.client)
            except BenchError as exc:
                figures[kind].error = str(exc)
                continue
            try:
                payload = await pick_payload(kind, client, args.manipulator)
            except BenchError as exc:
                figures[kind].error = str(exc)
                await client.close()
                continue
            targets.append(Target(figures[kind], client, server.pid, payload))
            live.append(kind)
        try:
            await run_rounds(targets, args.samples, args.seconds, args.rounds, args.warmup)
        finally:
            for target in targets:
                target.figures.extra["loaded_rss_kib"] = rss_kib(target.pid)
                await target.client.close()
    return figures, live


def time_startups(
    args: argparse.Namespace, figures: dict[str, Figures], live: list[str], log_dir: Path
) -> None:
    """More fresh starts of each server that ran, one at a time on a quiet machine."""
    for kind in live:
        times = [figures[kind].extra["startup_first_s"]]
        if args.starts > 1:
            spec = spec_for(kind, free_port(), 1 if args.pin else None)
            try:
                times += measure_startup(spec, log_dir, args.starts - 1)
            except BenchError as exc:
                print(f"start-up timing of {spec.name} failed: {exc}", file=sys.stderr)
        figures[kind].extra["startup_median_s"] = median(times)
        figures[kind].extra["startup_min_s"] = min(times)
        figures[kind].extra["startup_max_s"] = max(times)
        figures[kind].extra["startup_runs"] = len(times)


def print_resources(figures: dict[str, Figures]) -> None:
    rows = []
    for f in figures.values():
        x = f.extra
        if "idle_rss_kib" not in x:
            rows.append([f.name, "-", "-", "-", "-"])
            continue
        span = "-"
        if "startup_min_s" in x:
            span = f"{x['startup_min_s'] * 1000:.0f}-{x['startup_max_s'] * 1000:.0f}"
        rows.append(
            [
                f.name,
                fmt(x["idle_rss_kib"] / 1024, 1),
                fmt(x.get("loaded_rss_kib", float("nan")) / 1024, 1),
                f"{fmt(x.get('startup_median_s', float('nan')) * 1000)} ({span}) "
                f"x{int(x.get('startup_runs', 0))}",
                fmt(x["startup_first_s"] * 1000),
            ]
        )
    headers = ["server", "idle RSS MiB", "RSS after load MiB", "start->listen ms", "first ms"]
    print_table(headers, rows)


def print_resource_ratios(ours: Figures, theirs: Figures) -> None:
    if "idle_rss_kib" not in ours.extra or "idle_rss_kib" not in theirs.extra:
        return
    rss = ours.extra["idle_rss_kib"] / theirs.extra["idle_rss_kib"]
    meets = verdict(rss <= 0.6)
    print(f"idle RSS {ours.short} / {theirs.short}: {rss:.3f}x  (target <= 0.600x: {meets})")
    if "startup_median_s" in ours.extra and "startup_median_s" in theirs.extra:
        start = ours.extra["startup_median_s"] / theirs.extra["startup_median_s"]
        print(f"start->listen {ours.short} / {theirs.short}: {start:.2f}x (information, no target)")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    pin_client(0 if args.pin else None)
    log_dir = make_log_dir()
    skipped: dict[str, str] = {}
    if "upstream" in args.wanted:
        why = ensure_upstream(not args.no_install)
        if why:
            skipped["upstream"] = why
    if "ephysd" in args.wanted:
        compile_ephysd()
    started = time.monotonic()
    figures, live = asyncio.run(measure(args, log_dir, skipped))
    time_startups(args, figures, live, log_dir)
    print(
        f"(server logs in {log_dir}; run took {time.monotonic() - started:.0f} s)", file=sys.stderr
    )

    print(f"api_rtt: {conditions(args.samples, args.seconds, args.rounds)}")
    event = event_payload("get_position", args.manipulator)
    print(f"EVENT {event} over WebSocket, {args.client} client, servers in subprocesses\n")
    print_table(LATENCY_HEADERS, latency_rows(list(figures.values())))
    print_notes(list(figures.values()))
    print()
    print_resources(figures)
    print()
    if "ephysd" in figures and "upstream" in figures:
        print_ratios(figures["ephysd"], figures["upstream"], figures.get("floor"))
        print_resource_ratios(figures["ephysd"], figures["upstream"])
    if args.profile:
        for kind in live:
            if kind != "floor":
                print(f"\n=== cProfile of {SERVERS[kind]} (whole run, top by own time) ===")
                print_profile(profile_path(args.profile, kind), 30)
    return exit_status(list(figures.values()))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
