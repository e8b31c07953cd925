"""``make run``: the daemon on a simulated rig, and how to talk to it.

By default the rig is two simulated New Scale bridges, each a separate
``python -m drivers.newscale.sim`` process behind a pty, driven by
``ephysd --platform newscale``: a newcomer sees the real serial path (codec,
transport, driver, actor, Socket.IO) working, not a shortcut around it.
``--fake`` uses the in-process fake platform (eight 4-axis manipulators)
instead, and ``--scientifica`` two simulated Scientifica controllers
(``python -m drivers.scientifica.sim``: an IVM on firmware 3 and a PatchStar
on firmware 2) driven by ``ephysd --platform scientifica``. Other arguments
are passed to ``ephysd`` (e.g. ``--listen 127.0.0.1:3001 --debug``).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from ephysd.app import Daemon, url_host
from ephysd.cli import build_daemon, exit_status, parse_settings
from ephysd.errors import StartupError
from ephysd.logging_setup import configure_logging

# One ``python -m`` command per simulated device of a serial rig.
SIMULATED_BRIDGES = 2
NEWSCALE_SIMS = (("drivers.newscale.sim",),) * SIMULATED_BRIDGES
SCIENTIFICA_SIMS = (
    ("drivers.scientifica.sim", "--firmware", "3", "--model", "ivm_manipulator"),
    ("drivers.scientifica.sim", "--firmware", "2", "--model", "patchstar"),
)
SIM_START_TIMEOUT_S = 10.0
# The banner's example, run from the repository root.
EXAMPLE_PYTHON = ".venv/bin/python"
EXAMPLE_SCRIPT = "examples/move_a_probe.py"


def example_command(url: str, manipulator_id: str = "0") -> str:
    """A copy-paste command (from the repository root) that moves one probe.

    It needs only what ``make run`` installed (python-socketio in the venv),
    not the JavaScript packages the tests use.
    """
    return f"{EXAMPLE_PYTHON} {EXAMPLE_SCRIPT} {url} {manipulator_id}"


def banner(url: str, rig: str, manipulator_id: str) -> str:
    return "\n".join(
        [
            "",
            f"Rig page: {url}/  (open it in a browser: live positions and Stop buttons)",
            f"ephysd is running on a simulated rig ({rig}).",
            f"  Pinpoint: connect Ephys Link to {url}",
            "  Move a probe from another terminal, in this directory (the rig page shows it):",
            f"    {example_command(url, manipulator_id)}",
            "  Ctrl-C stops every manipulator and exits.",
            "",
        ]
    )


@asynccontextmanager
async def simulated_devices(simulators: Sequence[Sequence[str]]) -> AsyncIterator[list[str]]:
    """Start one simulator process per ``python -m`` command in ``simulators``; yield
    their pty paths, in that order.

    The simulators outlive the daemon inside this block, so the daemon's
    shutdown (halt, release host control) still reaches a device.
    """
    processes: list[trio.Process] = []
    paths: list[str] = []
    try:
        for module, *flags in simulators:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", module, *flags, "--no-stdin"],
                stdout=-1,
                # Out of the terminal's process group: Ctrl-C reaches the
                # daemon only, which still halts and releases the stages.
                start_new_session=True,
            )
            processes.append(process)
            paths.append(await _announced_path(process))
        yield paths
    finally:
        with trio.CancelScope(shield=True):
            for process in processes:
                process.terminate()
            with trio.move_on_after(2):
                for process in processes:
                    await process.wait()
            for process in processes:
                if process.returncode is None:
                    process.kill()


async def _announced_path(process: trio.Process) -> str:
    assert process.stdout is not None
    seen = b""
    with trio.fail_after(SIM_START_TIMEOUT_S):
        while b"\n" not in seen:
            chunk = await process.stdout.receive_some(256)
            if not chunk:
                raise StartupError("a simulator exited before opening its pty")
            seen += chunk
    line = seen.split(b"\n", 1)[0].decode()
    if not line.startswith("PTY "):
        raise StartupError(f"a simulator said {line!r} instead of its pty path")
    return line[4:].strip()


async def _serve(argv: list[str], use_fake: bool, use_scientifica: bool = False) -> None:
    if use_fake:
        await _run_daemon(["--platform", "fake", *argv], "8 fake manipulators, 4 axes, 20 mm", "0")
        return
    if use_scientifica:
        devices = "2 Scientifica controllers (IVM, PatchStar)"
        await _serve_simulated("scientifica", SCIENTIFICA_SIMS, devices, argv)
    else:
        devices = f"{SIMULATED_BRIDGES} New Scale M3-LS bridges"
        await _serve_simulated("newscale", NEWSCALE_SIMS, devices, argv)


async def _serve_simulated(
    platform: str, simulators: Sequence[Sequence[str]], devices: str, argv: list[str]
) -> None:
    """``ephysd --platform PLATFORM`` with one ``--port`` per simulator (named 1, 2, ...)."""
    async with simulated_devices(simulators) as paths:
        ports = [f"--port={n}={path}" for n, path in enumerate(paths, start=1)]
        rig = f"{devices} on ptys: {', '.join(paths)}"
        await _run_daemon(["--platform", platform, *ports, *argv], rig, "1")


async def _run_daemon(argv: list[str], rig: str, manipulator_id: str) -> None:
    settings = parse_settings(argv)
    configure_logging(settings.debug)
    daemon = build_daemon(settings, handle_signals=True)

    async def print_banner(daemon: Daemon) -> None:
        assert daemon.address is not None
        host, port = daemon.address
        print(banner(f"http://{url_host(host)}:{port}", rig, manipulator_id), flush=True)

    daemon.on_ready(print_banner)
    await daemon.run()


def run(argv: Sequence[str]) -> int:
    args = list(argv)
    use_fake, use_scientifica = "--fake" in args, "--scientifica" in args
    for flag in ("--fake", "--scientifica"):
        if flag in args:
            args.remove(flag)
    return exit_status(lambda: trio.run(_serve, args, use_fake, use_scientifica))


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
