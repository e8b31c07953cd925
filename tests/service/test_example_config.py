"""The example configuration documents every option, and is valid TOML when uncommented."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from ephysd.cli import build_parser
from ephysd.config import Limits, Settings, build_settings, load_toml
from tests.service.example_config import EXAMPLE, example_settings, uncommented


def test_example_is_all_comments_so_defaults_apply() -> None:
    assert tomllib.loads(EXAMPLE.read_text()) == {}


def test_example_uncommented_is_valid_toml_with_every_option() -> None:
    settings = example_settings()
    assert set(settings) == set(Settings.__struct_fields__)
    assert set(settings["limits"]) == set(Limits.__struct_fields__)
    assert len(settings["port"]) == 2


def test_example_values_are_accepted_by_the_daemon(tmp_path: Path) -> None:
    path = tmp_path / "ephysd.toml"
    path.write_text(uncommented(EXAMPLE.read_text()))
    settings = build_settings(load_toml(path), {})
    assert settings.platform == "fake"
    assert settings.allow == ("127.0.0.0/8", "::1/128")


def test_commented_defaults_are_the_daemon_defaults() -> None:
    defaults = Settings()
    shown = example_settings()
    for key in ("platform", "listen", "use_proxy", "proxy_address", "mpm_port", "debug"):
        assert shown[key] == getattr(defaults, key), key
    for key in ("parallax_port", "stop_on_disconnect", "ping_interval_ms", "ping_timeout_ms"):
        assert shown[key] == getattr(defaults, key), key
    assert tuple(shown["allow"]) == defaults.allow
    for key, value in shown["limits"].items():
        assert value == getattr(defaults.limits, key), key


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


def header_list(after: str) -> set[str]:
    """The names listed (on "#   " lines) under the header line starting with ``after``."""
    lines = EXAMPLE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(after))
    first = next(i for i in range(start, len(lines)) if lines[i].startswith("#   "))
    names: set[str] = set()
    for line in lines[first:]:
        if not line.startswith("#   "):
            break
        names.update(name.strip() for name in line[4:].split(",") if name.strip())
    return names


def test_the_header_says_which_keys_have_a_flag_and_which_live_in_the_file_only() -> None:
    parser = build_parser()
    options = {
        action.dest: action.option_strings
        for action in parser._actions
        if action.dest not in ("help", "version", "config")
    }
    same_name = {dest for dest, flags in options.items() if f"--{dest.replace('_', '-')}" in flags}
    assert header_list("# Keys with a command-line flag") == same_name
    assert options["stop_on_disconnect"] == ["--no-stop-on-disconnect"]
    assert "and stop_on_disconnect, whose flag is --no-stop-on-disconnect." in EXAMPLE.read_text()
    tables = {"limits": "[limits]", "manipulators": "[manipulators.NAME]"}
    file_only = {
        tables.get(name, name) for name in Settings.__struct_fields__ if name not in options
    }
    assert header_list("# Keys in this file only") == file_only
