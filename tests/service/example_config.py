"""``systemd/ephysd.toml``, the example configuration, as the tests read it: every
setting in it is commented out, so the defaults apply until someone uncomments one."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parents[2] / "systemd" / "ephysd.toml"

# Commented-out settings: "#key = ...", "#[table]", "#]", and array items '#  "...'.
_SETTING = re.compile(r'^#(?=[^ \n])|^#(?=  ")')


def uncommented(text: str) -> str:
    return "\n".join(_SETTING.sub("", line) for line in text.splitlines()) + "\n"


def example_settings() -> dict[str, Any]:
    """The example with every setting uncommented, parsed."""
    return tomllib.loads(uncommented(EXAMPLE.read_text()))
