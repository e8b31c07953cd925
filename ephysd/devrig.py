"""``make run``: the daemon on a simulated rig, and how to talk to it.

Uses the fake platform (eight manipulators that move in real time); the
integrator may switch it to the New Scale simulator over a pty. Extra
arguments are passed to ``ephysd`` (e.g. ``--listen 127.0.0.1:3001 --debug``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import trio

from drivers.base import DeviceError
from ephysd.app import Daemon
from ephysd.cli import _fail, parse_settings, platform_options
from ephysd.config import ConfigError
from ephysd.errors import StartupError, find_leaf
from ephysd.logging_setup import configure_logging
from ephysd.platforms import create_platform


def example_command(url: str) -> str:
    """A copy-paste one-liner (from the repository root) with the official JS client."""
    script = (
        f"const s = require('socket.io-client').io('{url}');"
        " s.on('connect', async () => {"
        " console.log(await s.emitWithAck('get_manipulators'));"
        " console.log(await s.emitWithAck('set_position', JSON.stringify("
        "{ManipulatorId: '0', Position: {x: 1, y: 2, z: 3, w: 4}, Speed: 2})));"
        " s.close(); });"
    )
    return f'node -e "{script}"'


def banner(url: str) -> str:
    return "\n".join(
        [
            "",
            "ephysd is running on a simulated rig (8 fake manipulators, 4 axes, 20 mm).",
            f"  Pinpoint: connect Ephys Link to {url}",
            "  Try it from another terminal, in this directory:",
            f"    {example_command(url)}",
            "  Ctrl-C stops every manipulator and exits.",
            "",
        ]
    )


async def _print_banner(daemon: Daemon) -> None:
    assert daemon.address is not None
    host, port = daemon.address
    print(banner(f"http://{host}:{port}"), flush=True)


def run(argv: Sequence[str]) -> int:
    try:
        settings = parse_settings(["--platform", "fake", *argv])
    except ConfigError as exc:
        return _fail(str(exc), 2)
    configure_logging(settings.debug)
    try:
        daemon = Daemon(
            settings,
            create_platform(settings.platform, platform_options(settings)),
            handle_signals=True,
        )
        daemon.on_ready(_print_banner)
        trio.run(daemon.run)
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:
        leaf = find_leaf(exc, (StartupError, DeviceError, ConfigError))
        if leaf is None:
            raise
        return _fail(str(leaf))
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
