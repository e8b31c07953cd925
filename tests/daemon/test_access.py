"""Access settings through the real server: token, browser Origin, request rate."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import trio

from drivers.base import PlatformConfigError
from drivers.fake import FakePlatform
from ephysd.cli import parse_settings
from ephysd.config import ConfigError, Limits, Settings, estop_device
from ephysd.logging_setup import configure_logging
from ephysd.security import TOO_MANY_REQUESTS
from tests.daemon.e2e import port_of, run_client, run_sync_client, running_daemon, url_of
from tests.service.sio import sio_client


@pytest.mark.parametrize("kind", ["python", "js"])
async def test_a_configured_token_is_required(kind: str) -> None:
    async with running_daemon(token="s3cret-token") as daemon:
        url = url_of(daemon)
        refused = await run_client(kind, url, [["connect", None, {"token": "guess"}]])
        assert refused[0]["refused"]["message"] == "Invalid token."
        accepted = await run_client(
            kind, url, [["connect", None, {"token": "s3cret-token"}], ["call", "get_version"]]
        )
        assert accepted[1] == "2.3.6"


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
        url = f"http://{host}:{port_of(daemon)}"
        result = await run_sync_client(url, ["websocket"])
    assert result == {"transport": "websocket", "version": "2.3.6"}


async def test_a_python_script_with_the_sync_client_upgrades_to_websocket() -> None:
    async with running_daemon() as daemon:
        result = await run_sync_client(url_of(daemon), None)
    assert result == {"transport": "websocket", "version": "2.3.6"}


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
    assert results[1] == "2.3.6"


@pytest.mark.parametrize("kind", ["python", "js"])
async def test_another_port_on_the_daemons_host_is_a_foreign_origin(kind: str) -> None:
    async with running_daemon() as daemon:
        other = f"http://127.0.0.1:{port_of(daemon) + 1}"
        steps: list[list[Any]] = [["connect", None, None, {"Origin": other}]]
        results = await run_client(kind, url_of(daemon), steps)
    assert "refused" in results[0], results


async def test_a_client_over_its_budget_is_slowed_down_not_refused_and_stops_overtake(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Two requests a second: of four sent at once, the last waits about 1.5 s.
    caplog.set_level(logging.WARNING, logger="ephysd.security")
    async with running_daemon(limits=Limits(rate=2, burst=1)) as daemon:
        steps: list[list[Any]] = [["connect"]]
        steps += [["spawn", "get_version"] for _ in range(4)]
        steps += [["spawn", "stop", "0"], ["spawn", "stop_all"], ["join"]]
        results = await run_client("python", url_of(daemon), steps)
    assert "client over its request budget: 1 request(s) slowed down so far" in caplog.text
    answers = results[1:]
    assert sorted(a["event"] for a in answers) == ["get_version"] * 4 + ["stop", "stop_all"]
    # Every request was served, none refused.
    assert all(a["answer"] == ("2.3.6" if a["event"] == "get_version" else "") for a in answers)
    # The stops, sent after the waiting reads, were answered before the last of them.
    assert answers[-1]["event"] == "get_version"


async def test_a_client_flooding_far_past_its_budget_still_gets_its_stop_all_through_at_once() -> (
    None
):
    """Requests waiting for budget hold the connection's handler slots; were
    they all taken, the server would stop reading, and the stop_all sent behind
    the flood would wait for the flood. Past half the slots the flood is refused
    instead, so the stop_all overtakes every slowed request and stops the move."""
    platform = FakePlatform()
    async with running_daemon(platform, limits=Limits(rate=20, burst=1)) as daemon:
        assert daemon.address is not None
        async with sio_client(daemon.address[1]) as client, trio.open_nursery() as nursery:
            order: list[tuple[str, Any]] = []

            async def call(event: str, *args: Any) -> None:
                order.append((event, await client.call(event, *args, timeout_s=60)))

            move = '{"ManipulatorId":"0","Position":{"x":10,"y":0,"z":0,"w":0},"Speed":1}'
            nursery.start_soon(call, "set_position", move)
            await trio.sleep(0.3)  # the move under way
            for _ in range(200):
                nursery.start_soon(call, "get_version")
            await trio.sleep(0.3)  # every request sent and read
            nursery.start_soon(call, "stop_all")
    events = [event for event, _ in order]
    stopped = events.index("stop_all")
    served = [i for i, (event, answer) in enumerate(order) if answer == "2.3.6"]
    refused = [answer for event, answer in order if answer == TOO_MANY_REQUESTS]
    # Answered before all but the first few slowed requests (the stop_all came
    # 0.3 s after them, time for about 6 of them at 20 a second).
    assert len([i for i in served if i < stopped]) < 20, events
    moved = dict(order)["set_position"]
    assert json.loads(moved)["Error"].startswith("Manipulator 0 did not reach target position")
    assert platform.manipulators[0].halts >= 1
    # A slowed flood: dozens served in turn, the rest refused, nothing else.
    assert len(served) >= 32
    assert len(served) + len(refused) == 200


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


# Each follows "debug = true" and a good new origin; every one has one error.
NEW_ORIGIN = 'allow_origin = ["https://b.example"]\n'
BAD_RELOADS = {
    "a bad origin after a good one": 'allow_origin = ["https://b.example", "nonsense"]\n',
    "an empty token": NEW_ORIGIN + 'token = ""\n',
    "a serial platform without a port": NEW_ORIGIN + 'platform = "newscale"\n',
    "a limit out of range": NEW_ORIGIN + "[limits]\nmax_connections = 0\n",
}


@pytest.mark.parametrize("bad", BAD_RELOADS.values(), ids=BAD_RELOADS.keys())
async def test_a_reload_with_any_error_in_the_file_applies_none_of_it(
    bad: str, tmp_path: Path
) -> None:
    config = tmp_path / "ephysd.toml"
    config.write_text('allow_origin = ["https://a.example"]\n')

    def reread() -> Settings:
        return parse_settings(["--config", str(config), "--listen", "127.0.0.1:0"])

    configure_logging(False)
    async with running_daemon(
        allow_origin=("https://a.example",), reload_settings=reread
    ) as daemon:
        before = daemon.settings
        config.write_text("debug = true\n" + bad)
        with pytest.raises((ConfigError, PlatformConfigError)):
            await daemon.reload()
        assert logging.getLogger().level == logging.INFO
        assert daemon.access.origin_allowed("https://a.example")
        assert not daemon.access.origin_allowed("https://b.example")
        assert daemon.settings == before
        # The same file, mended, is applied whole.
        config.write_text("debug = true\n" + NEW_ORIGIN)
        await daemon.reload()
        assert logging.getLogger().level == logging.DEBUG
        assert daemon.access.origin_allowed("https://b.example")
        assert daemon.settings.debug and daemon.settings.allow_origin == ("https://b.example",)
