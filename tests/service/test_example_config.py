"""The example configuration documents every option, and is valid TOML when uncommented."""

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
    return tomllib.loads(uncommented(EXAMPLE.read_text()))


def test_example_is_all_comments_so_defaults_apply() -> None:
    assert tomllib.loads(EXAMPLE.read_text()) == {}


def test_example_uncommented_is_valid_toml_with_every_option() -> None:
    settings = example_settings()
    assert set(settings) == {
        "platform",
        "port",
        "estop",
        "mpm_port",
        "parallax_port",
        "listen",
        "allow",
        "allow_origin",
        "token",
        "use_proxy",
        "proxy_address",
        "limits",
        "debug",
    }
    assert set(settings["limits"]) == {"max_connections", "max_payload", "rate", "burst"}
    assert len(settings["port"]) == 2


def test_every_option_has_a_comment_above_it() -> None:
    lines = EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^#\w+ = ", line):
            above = lines[index - 1]
            assert (
                above.startswith("# ")
                or re.match(r"^#\w+ = .*# ", line)
                or (re.match(r"^#\w+ = ", above))
            ), f"undocumented option: {line}"
