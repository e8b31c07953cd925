"""Daemon logging: one line per event, plain for journald, colour only on a TTY.

Under systemd, stdout goes to the journal, which timestamps lines itself and
understands a ``<N>`` syslog-priority prefix; so there we print
``<N>logger: message``. Anywhere else that is not a terminal (a pipe, a file)
we add a timestamp and the level. Tracebacks are folded onto the same line so
one event never spans several journal entries. ``--debug`` turns on DEBUG,
which the API and protocol use for wire-level detail.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

_SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}

_COLOURS = {
    logging.CRITICAL: "\x1b[1;31m",
    logging.ERROR: "\x1b[31m",
    logging.WARNING: "\x1b[33m",
    logging.INFO: "\x1b[36m",
    logging.DEBUG: "\x1b[2m",
}
_RESET = "\x1b[0m"


def _one_line(text: str) -> str:
    return text.replace("\r", "").replace("\n", " | ")


class JournalFormatter(logging.Formatter):
    """``<priority>logger: message``; journald adds the time."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
        return f"<{priority}>{record.name}: {_one_line(super().format(record))}"


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return _one_line(super().format(record))


class ColourFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        colour = _COLOURS.get(record.levelno, "")
        return f"{colour}{_one_line(super().format(record))}{_RESET}"


def _is_journal(out: TextIO) -> bool:
    """True when ``out`` is the very stream systemd connected to the journal."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        st = os.fstat(out.fileno())
    except (OSError, ValueError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


def configure_logging(debug: bool = False, stream: TextIO | None = None) -> None:
    """Install the one root handler (idempotent: replaces an earlier one)."""
    out = stream if stream is not None else sys.stdout
    formatter: logging.Formatter
    if _is_journal(out):
        formatter = JournalFormatter("%(message)s")
    elif out.isatty():
        formatter = ColourFormatter()
    else:
        formatter = PlainFormatter()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_ephysd", False):
            root.removeHandler(old)
    handler._ephysd = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # The protocol's per-packet chatter is only wanted with --debug.
    logging.getLogger("protocol").setLevel(logging.DEBUG if debug else logging.WARNING)
