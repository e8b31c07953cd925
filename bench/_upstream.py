"""The upstream Ephys Link server (PyPI ephys-link 2.3.6) as a bench subject, in its own venv.

``ensure_upstream`` installs it on first use (``setup_upstream.sh``, idempotent)
into ``bench/.venv-upstream``; ``upstream_argv`` starts its fake platform on a
free port through ``_upstream_launcher.py``. Shared by every bench that puts
ephysd and upstream side by side.
"""

from __future__ import annotations

import subprocess
import sys

from _common import BENCH_DIR

UPSTREAM_VENV = BENCH_DIR / ".venv-upstream"
UPSTREAM_PYTHON = UPSTREAM_VENV / "bin" / "python"
SETUP_SCRIPT = BENCH_DIR / "setup_upstream.sh"
LAUNCHER = BENCH_DIR / "_upstream_launcher.py"
SETUP_TIMEOUT_S = 900.0
# Upstream prints with rich; keep every server's console plain and unbuffered.
SERVER_ENV = {"PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "TERM": "dumb"}


def ensure_upstream(allow_install: bool) -> str:
    """'' when upstream can run, else why it is skipped."""
    stamp = UPSTREAM_VENV / ".bench-installed"
    if UPSTREAM_PYTHON.exists() and stamp.exists():
        return ""
    if not allow_install:
        return f"not installed in {UPSTREAM_VENV} (run {SETUP_SCRIPT})"
    print(f"installing upstream ephys-link into {UPSTREAM_VENV} ...", file=sys.stderr)
    try:
        result = subprocess.run(
            ["bash", str(SETUP_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=SETUP_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{SETUP_SCRIPT.name} failed: {exc!r}"
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-10:])
        return f"{SETUP_SCRIPT.name} exited {result.returncode}:\n{tail}"
    return ""


def upstream_argv(port: int) -> list[str]:
    """Upstream's own main() with its fake platform, on 127.0.0.1:port."""
    return [str(UPSTREAM_PYTHON), str(LAUNCHER), "--port", str(port)]
