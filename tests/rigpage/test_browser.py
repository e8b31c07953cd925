"""The rig page in a real browser (headless Chromium) against a running daemon."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from drivers.base import DeviceError
from drivers.fake import ANGLES, FakeManipulator, FakePlatform
from tests.daemon.e2e import live_client, move, port_of, running_daemon, url_of
from tests.rigpage.browser import Browser, open_browser
from tests.service.sio import sio_client


async def cell(browser: Browser, manipulator_id: str, column: int) -> str | None:
    """The text of one cell of a manipulator's row (1: id, 2-5: x y z w, 7: state, 9: error)."""
    found = await browser.script(
        "const row = [...document.querySelectorAll('#rows tr')]"
        "  .find(r => r.dataset.id === arguments[0]);"
        "return row ? row.children[arguments[1] - 1].textContent : null;",
        manipulator_id,
        column,
    )
    return None if found is None else str(found)


async def x_of(browser: Browser, manipulator_id: str) -> float | None:
    text = await cell(browser, manipulator_id, 2)
    return float(text) if text is not None and text != "-" else None


async def test_the_page_follows_a_moving_probe_and_its_stop_all_stops_the_controllers_move(
    tmp_path: Path,
) -> None:
    platform = FakePlatform()
    async with running_daemon(platform) as daemon, open_browser() as browser:
        url = url_of(daemon)
        await browser.get(url + "/")

        async def shows_position() -> bool:
            return await x_of(browser, "0") is not None

        await browser.wait_for(shows_position, "manipulator 0's position")
        assert await browser.text("#platform") == "Fake Manipulator"
        assert await cell(browser, "0", 2) == "0.000"
        assert await browser.text("#controller") == "none"
        steps = [
            ["connect"],
            ["start", "set_position", move("0", 10, 1)],
            ["finish"],
            ["disconnect"],
        ]
        async with live_client("python", url, steps) as controller:
            assert "connected" in await controller.next_result()
            assert await controller.next_result() == "started"

            async def moved() -> float | None:
                x = await x_of(browser, "0")
                return x if x is not None and x > 0 else None

            first = await browser.wait_for(moved, "manipulator 0 to move")

            async def moved_on() -> float | None:
                x = await x_of(browser, "0")
                return x if x is not None and x > first else None

            second = await browser.wait_for(moved_on, "manipulator 0 to move on")
            assert await cell(browser, "0", 7) == "moving"
            assert (await browser.text("#controller") or "").startswith("127.0.0.1:")
            await browser.screenshot(tmp_path / "rig-page-moving.png")
            await browser.click("#stop-all")
            answer = json.loads(await controller.next_result(timeout_s=10))
            assert answer["Error"].startswith("Manipulator 0 did not reach target position")

            async def stopped_notice() -> bool:
                return await browser.text("#notice") == "Stopped every manipulator."

            await browser.wait_for(stopped_notice, "the stop's confirmation")

            async def shows_error() -> bool:
                error = await cell(browser, "0", 9) or ""
                return error.startswith("Manipulator 0 did not reach")

            await browser.wait_for(shows_error, "the stopped move's error")
            await browser.screenshot(tmp_path / "rig-page-stopped.png")
    assert platform.manipulators[0].halts >= 1
    stopped_at = platform.manipulators[0]._position[0]
    assert second <= stopped_at < 10


class HostileManipulator(FakeManipulator):
    """A manipulator whose name and errors are HTML that would run if the page parsed it."""

    async def angles(self) -> tuple[float, float, float]:
        raise DeviceError(HOSTILE_ERROR)


HOSTILE_ID = "<img src=x onerror=\"document.title='pwned'\">"
HOSTILE_ERROR = "<script>document.title='pwned'</script><b id=\"bold\">bold</b> & done"


async def test_the_page_shows_names_and_errors_as_text_never_as_markup(tmp_path: Path) -> None:
    platform = FakePlatform(2)
    platform.manipulators[1] = HostileManipulator(HOSTILE_ID, ANGLES[1])
    async with (
        running_daemon(platform) as daemon,
        sio_client(port_of(daemon)) as controller,
        open_browser() as browser,
    ):
        answer = json.loads(await controller.call("get_angles", HOSTILE_ID))
        error = f"DeviceError: {HOSTILE_ERROR}"
        assert answer["Error"] == error
        await browser.get(url_of(daemon) + "/")

        async def shows_error() -> bool:
            rows = await browser.script(
                "return [...document.querySelectorAll('#rows tr')].map(r => r.dataset.id);"
            )
            if rows != ["0", HOSTILE_ID]:
                return False
            return await cell(browser, HOSTILE_ID, 9) == error

        await browser.wait_for(shows_error, "the hostile row and its error")
        assert await cell(browser, HOSTILE_ID, 1) == HOSTILE_ID
        markup = await browser.script(
            "return document.querySelectorAll('#rows img, #rows script, #rows b').length;"
        )
        assert markup == 0
        assert await browser.script("return document.title;") == "ephysd rig"
        await browser.screenshot(tmp_path / "rig-page-hostile.png")
    await trio.lowlevel.checkpoint()
