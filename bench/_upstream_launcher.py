"""Start the upstream Ephys Link server (fake platform) for bench/api_rtt.py.

    bench/.venv-upstream/bin/python bench/_upstream_launcher.py --port N

Runs upstream's own ``ephys_link.__main__.main`` with the CLI arguments
``-i -t fake`` (no update check, fake platform), after three patches that
leave the measured code path as it is:

- the port: upstream hard-codes 3000 (``PORT`` in ephys_link.utils.constants,
  imported by name into back_end.server); the bench sets the module global
  to a free port so that it never collides with a daemon already on 3000;
- the address: upstream's ``run_app`` binds every interface; the bench binds
  127.0.0.1 only;
- the emergency-stop hotkey: ``keyboard.add_hotkey`` needs a real keyboard
  device and crashes on a headless machine; it is replaced by a no-op.

Only ever run by the upstream venv's interpreter, hence no static imports of
ephys_link here.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
import typing
from typing import Any


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="upstream Ephys Link, fake platform")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)

    if not hasattr(typing, "override"):  # Python < 3.12 without the venv's sitecustomize
        typing_extensions = importlib.import_module("typing_extensions")
        typing.override = typing_extensions.override  # type: ignore[attr-defined]

    server_module: Any = importlib.import_module("ephys_link.back_end.server")
    server_module.PORT = args.port
    server_module.run_app = functools.partial(server_module.run_app, host=args.host)
    entry: Any = importlib.import_module("ephys_link.__main__")
    entry.add_hotkey = lambda *_args, **_kwargs: None

    sys.argv = ["ephys-link", "-i", "-t", "fake"]
    entry.main()


if __name__ == "__main__":
    main(sys.argv[1:])
