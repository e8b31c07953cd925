"""Access settings through the real server: token, browser Origin, request rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ephysd.cli import parse_settings
from ephysd.config import Limits, Settings, estop_device
from tests.daemon.e2e import run_client, run_sync_client, running_daemon, url_of


@pytest.mark.parametrize("kind", ["python", "js"])
async def test_a_configured_token_is_required(kind: str) -> None:
    async with running_daemon(token="s3cret-token") as daemon:
        url = url_of(daemon)
        refused = await run_client(kind, url, [["connect", None, {"token": "guess"}]])
        assert refused[0]["refused"]["message"] == "Invalid token."
        accepted = await run_client(
            kind, url, [["connect", None, {"token": "s3cret-token"}], ["call", "get_version"]]
        )
        assert accepted[1] == "2.3.0"


async def test_a_web_page_from_a_foreign_origin_is_refused() -> None:
    async with running_daemon(allow_origin=("https://pinpoint.example",)) as daemon:
        url = url_of(daemon)
        evil = await run_client(
            "python", url, [["connect", None, None, {"Origin": "https://evil.example"}]]
        )
        assert "refused" in evil[0]
        assert daemon.policy is not None
        assert daemon.policy.controller is None
        good = await run_client(
            "python",
            url,
            [["connect", None, None, {"Origin": "https://pinpoint.example"}], ["call", "stop_all"]],
        )
        assert good[1] == ""


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_python_script_with_the_sync_client_connects_over_websocket_only(
    host: str,
) -> None:
    # websocket-client sends Origin: http://HOST:PORT, the daemon's own address.
    async with running_daemon() as daemon:
        assert daemon.address is not None
        url = f"http://{host}:{daemon.address[1]}"
        result = await run_sync_client(url, ["websocket"])
    assert result == {"transport": "websocket", "version": "2.3.0"}


async def test_a_python_script_with_the_sync_client_upgrades_to_websocket() -> None:
    async with running_daemon() as daemon:
        result = await run_sync_client(url_of(daemon), None)
    assert result == {"transport": "websocket", "version": "2.3.0"}


@pytest.mark.parametrize("kind", ["python", "js"])
@pytest.mark.parametrize("transports", [["websocket"], ["polling"], None])
async def test_a_page_of_the_daemons_own_origin_connects(
    kind: str, transports: list[str] | None
) -> None:
    async with running_daemon() as daemon:
        url = url_of(daemon)
        results = await run_client(
            kind, url, [["connect", transports, None, {"Origin": url}], ["call", "get_version"]]
        )
    assert "connected" in results[0], results
    assert results[1] == "2.3.0"


@pytest.mark.parametrize("kind", ["python", "js"])
async def test_another_port_on_the_daemons_host_is_a_foreign_origin(kind: str) -> None:
    async with running_daemon() as daemon:
        assert daemon.address is not None
        other = f"http://127.0.0.1:{daemon.address[1] + 1}"
        steps: list[list[Any]] = [["connect", None, None, {"Origin": other}]]
        results = await run_client(kind, url_of(daemon), steps)
    assert "refused" in results[0], results


async def test_request_rate_is_limited_but_stop_always_passes() -> None:
    async with running_daemon(limits=Limits(rate=0.5, burst=2)) as daemon:
        results = await run_client(
            "python",
            url_of(daemon),
            [
                ["connect"],
                ["call", "get_version"],
                ["call", "get_version"],
                ["call", "get_version"],
                ["call", "stop", "0"],
                ["call", "stop_all"],
            ],
        )
    assert results[1:] == ["2.3.0", "2.3.0", '{"error": "Too many requests."}', "", ""]


def test_config_file_access_and_limits_keys(tmp_path: Path) -> None:
    config = tmp_path / "ephysd.toml"
    config.write_text(
        'allow = ["10.0.0.0/8"]\ntoken = "abc"\nestop = "auto"\n'
        "[limits]\nmax_connections = 4\nrate = 10\n"
    )
    settings = parse_settings(["--config", str(config)])
    assert settings.allow == ("10.0.0.0/8",)
    assert settings.token == "abc"
    assert settings.limits == Limits(max_connections=4, rate=10.0)
    assert estop_device(settings) is None
    assert estop_device(parse_settings(["--estop", "/dev/ttyACM0"])) == "/dev/ttyACM0"


async def test_reload_applies_new_origins() -> None:
    new = Settings(allow_origin=("https://b.example",))
    async with running_daemon(
        allow_origin=("https://a.example",), reload_settings=lambda: new
    ) as daemon:
        assert daemon.access is not None
        assert daemon.access.origin_allowed("https://a.example")
        await daemon.reload()
        assert daemon.access.origin_allowed("https://b.example")
        assert not daemon.access.origin_allowed("https://a.example")
