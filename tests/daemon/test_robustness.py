"""Bad devices and odd conditions: bounded waits, driver bugs, e-stop, log lines."""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import pty
import sys
import tty

import pytest
import trio

from drivers.base import Vector
from drivers.fake import ANGLES, FakeManipulator, FakePlatform
from ephysd.actor import ActorLimits, Result
from ephysd.api import Api
from ephysd.logging_setup import JournalFormatter, PlainFormatter
from ephysd.models import Vector4
from ephysd.rig import open_rig
from protocol.server import Deferred
from tests.daemon.e2e import running_daemon

FAST = ActorLimits(read_timeout_s=0.2, halt_timeout_s=0.2, move_slack_s=0.3, move_time_factor=1.0)


class HangingManipulator(FakeManipulator):
    """Answers nothing: every read waits forever."""

    async def position(self) -> Vector:
        await trio.sleep_forever()
        raise AssertionError


class SlowOnceManipulator(FakeManipulator):
    """The first position read hangs inside trio.sleep (a cancel scope of its
    own); later ones answer at once, and a slow one answers after a short wait."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.reads = 0

    async def position(self) -> Vector:
        self.reads += 1
        if self.reads == 1:
            await trio.sleep(3600)
        elif self.reads == 3:
            await trio.sleep(0.05)
        return await super().position()


class BuggyManipulator(FakeManipulator):
    async def angles(self) -> tuple[float, float, float]:
        raise IndexError("list index out of range")


class StuckManipulator(FakeManipulator):
    """Accepts a move, then never reports it finished."""

    async def move_to(self, target: Vector, speed_mm_s: float) -> Vector:
        try:
            await trio.sleep_forever()
        finally:
            self.halts += 1
        raise AssertionError


def platform_with(manipulator: FakeManipulator) -> FakePlatform:
    platform = FakePlatform(count=2)
    platform.manipulators[0] = manipulator
    return platform


async def test_a_device_that_does_not_answer_gets_a_timeout_error_in_time() -> None:
    async with open_rig(platform_with(HangingManipulator("0", ANGLES[0])), FAST) as rig:
        api = Api(rig, "1a2b3c4d")
        with trio.fail_after(2):
            answer = json.loads(await api.handle("get_position", ["0"]))
        assert answer["Error"] == (
            "DeviceTimeout: Manipulator 0 did not answer a position read within 0.2 s."
        )
        assert json.loads(await api.handle("get_position", ["1"]))["Error"] == ""


async def test_every_reader_keeps_serving_after_a_read_timed_out() -> None:
    """Reads run their deadline only when the device waits; after one fired,
    more reads than there are readers (instant, then one that waits a little)
    are all answered."""
    slow_once = SlowOnceManipulator("0", ANGLES[0])
    async with open_rig(platform_with(slow_once), FAST) as rig:
        api = Api(rig, "1a2b3c4d")
        with trio.fail_after(2):
            first = json.loads(await api.handle("get_position", ["0"]))
            assert first["Error"].startswith("DeviceTimeout: Manipulator 0 did not answer")
            answers = [
                json.loads(await api.handle("get_position", ["0"])) for _ in range(FAST.readers + 2)
            ]
    assert [answer["Error"] for answer in answers] == [""] * (FAST.readers + 2)
    assert slow_once.reads == FAST.readers + 3


async def test_a_move_that_never_ends_is_bounded_and_halted() -> None:
    stuck = StuckManipulator("0", ANGLES[0])
    async with open_rig(platform_with(stuck), FAST) as rig:
        api = Api(rig, "1a2b3c4d")
        request = '{"ManipulatorId":"0","Position":{"x":0},"Speed":1000}'
        with trio.fail_after(3):
            answer = json.loads(await api.handle("set_position", [request]))
        assert answer["Error"].startswith("DeviceTimeout: Manipulator 0 did not answer the end")
        assert stuck.halts == 1


async def test_a_driver_bug_becomes_an_error_text_and_the_daemon_keeps_serving() -> None:
    async with open_rig(platform_with(BuggyManipulator("0", ANGLES[0])), FAST) as rig:
        api = Api(rig, "1a2b3c4d")
        answer = json.loads(await api.handle("get_angles", ["0"]))
        assert answer == {
            "Angles": {"x": 0.0, "y": 0.0, "z": 0.0},
            "Error": "IndexError: list index out of range",
        }
        assert json.loads(await api.handle("get_angles", ["1"]))["Error"] == ""


async def test_estop_button_press_stops_every_moving_manipulator() -> None:
    master, slave = pty.openpty()
    tty.setraw(slave)
    platform = FakePlatform()
    try:
        async with running_daemon(platform, estop=os.ttyname(slave)) as daemon:
            assert daemon.api is not None
            api = daemon.api
            answers: list[str] = []

            async def long_move(mid: str) -> None:
                request = json.dumps({"ManipulatorId": mid, "Position": {"x": 10}, "Speed": 1})
                answers.append(await api.handle("set_position", [request]))

            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    for mid in ("0", "5"):
                        nursery.start_soon(long_move, mid)
                    await trio.sleep(0.2)
                    os.write(master, b"STOP\n")
        assert len(answers) == 2
        assert all("did not reach target position" in a for a in answers)
        assert platform.manipulators[0].halts >= 1
        assert platform.manipulators[5].halts >= 1
    finally:
        os.close(master)
        os.close(slave)


def test_log_lines_are_single_lines_with_journal_priorities() -> None:
    try:
        raise ValueError("first\nsecond")
    except ValueError:
        record = logging.LogRecord(
            "ephysd.actor", logging.ERROR, __file__, 1, "move failed:\n%s", ("boom",), None
        )
        record.exc_info = sys.exc_info()
    journal = JournalFormatter("%(message)s").format(record)
    assert journal.startswith("<3>ephysd.actor: move failed: | boom")
    assert "\n" not in journal
    assert "ValueError: first | second" in journal
    plain = PlainFormatter().format(record)
    assert "ERROR ephysd.actor: move failed: | boom" in plain
    assert "\n" not in plain


def test_colour_only_on_a_tty() -> None:
    from ephysd.logging_setup import configure_logging

    stream = io.StringIO()
    root = logging.getLogger()
    before = list(root.handlers), root.level
    configure_logging(False, stream)
    try:
        logging.getLogger("ephysd.test").info("hello")
    finally:
        root.handlers[:], level = before
        root.setLevel(level)
    assert stream.getvalue().rstrip().endswith("INFO ephysd.test: hello")
    assert "\x1b[" not in stream.getvalue()


async def test_requests_to_an_actor_that_ended_are_answered_instead_of_waiting_forever() -> None:
    """Reads in flight (eight readers busy on a hung device) and reads still
    queued behind them all get an answer when the actor ends (shutdown)."""
    answers: list[dict[str, object]] = []
    patient = ActorLimits(read_timeout_s=60.0)
    # The clients' nursery ends only once every ask has its answer.
    with trio.fail_after(5):
        async with trio.open_nursery() as clients:
            with trio.CancelScope() as rig_scope:
                async with open_rig(
                    platform_with(HangingManipulator("0", ANGLES[0])), patient
                ) as rig:
                    api = Api(rig, "1a2b3c4d")

                    async def ask() -> None:
                        answers.append(json.loads(await api.handle("get_position", ["0"])))

                    for _ in range(patient.readers + 2):
                        clients.start_soon(ask)
                    await trio.sleep(0.1)
                    assert answers == []
                    rig_scope.cancel()
    assert len(answers) == patient.readers + 2
    assert {answer["Error"] for answer in answers} == {"DeviceError: Manipulator 0 is shut down."}


async def test_a_reply_callback_that_raises_does_not_take_the_actor_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Read answers are rendered by a callback on the actor's task; a bug there
    costs that one answer, and the actor keeps serving."""
    calls: list[Result[Vector4]] = []

    def broken(result: Result[Vector4]) -> None:
        calls.append(result)
        raise RuntimeError("bug in an answer's rendering")

    with trio.fail_after(5):
        async with open_rig(platform_with(FakeManipulator("0", ANGLES[0]))) as rig:
            handle = rig.handles["0"]
            with caplog.at_level(logging.ERROR):
                await handle.request_position(broken)
                after = await handle.get_position()
    assert len(calls) == 1 and calls[0].error == ""
    assert after.error == "" and after.value is not None
    assert "a Deferred's callback failed" in caplog.text


async def test_reads_leave_no_garbage_for_the_cyclic_collector() -> None:
    """A read's reply path must free itself by reference counting: cyclic
    garbage per request makes the collector run every few dozen requests,
    and each run is a latency spike for the client polling positions."""
    async with open_rig(platform_with(FakeManipulator("0", ANGLES[0]))) as rig:
        api = Api(rig, "1a2b3c4d")
        answers: list[str] = []
        done = trio.Event()

        def collect(text: str) -> None:
            answers.append(text)
            if len(answers) == 200:
                done.set()

        gc.collect()
        gc.disable()
        try:
            for _ in range(200):
                answer = await api.answer("get_position", ["0"])
                assert isinstance(answer, Deferred)
                answer.on_resolved(collect)
            with trio.fail_after(5):
                await done.wait()
            unreachable = gc.collect()
        finally:
            gc.enable()
    assert all(json.loads(text)["Error"] == "" for text in answers)
    assert unreachable < 20  # a cycle per read would leave well over 200
