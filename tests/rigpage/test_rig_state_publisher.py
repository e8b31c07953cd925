"""The rig_state publisher's rates, on the fake rig in Trio's virtual time.

A MockClock that jumps ahead whenever every task sleeps makes rates exact:
"at least 5 refreshes a second" and "at most 20 pushes a second" are counted,
not timed. The publisher's sends go to a recorder standing in for the
Socket.IO server (the wire is covered by the daemon tests next to this file).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing

from drivers.base import Vector
from drivers.fake import ANGLES, FakeManipulator, FakePlatform
from ephysd.estop import EStopState
from ephysd.observers import Observers
from ephysd.rig import Rig, open_rig
from ephysd.rig_state import RigStatePublisher


class CountingManipulator(FakeManipulator):
    """A fake manipulator that counts its position reads (device traffic)."""

    def __init__(self, manipulator_id: str) -> None:
        super().__init__(manipulator_id, ANGLES[int(manipulator_id) % len(ANGLES)])
        self.reads = 0

    async def position(self) -> Vector:
        self.reads += 1
        return await super().position()


class Recorder:
    """Records every rig_state sent, per observer; ``stall`` makes one observer's sends hang."""

    def __init__(self) -> None:
        self.sent: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        self.stall: set[str] = set()

    async def emit(
        self, event: str, *args: Any, to: str | None = None, namespace: str = "/"
    ) -> None:
        assert event == "rig_state" and to is not None
        if to in self.stall:
            await trio.sleep_forever()
        self.sent.setdefault(to, []).append((trio.current_time(), json.loads(args[0])))


def counting_platform(count: int = 8) -> FakePlatform:
    platform = FakePlatform(count)
    platform.manipulators = [CountingManipulator(str(i)) for i in range(count)]
    return platform


def reads(platform: FakePlatform) -> list[int]:
    return [m.reads for m in platform.manipulators if isinstance(m, CountingManipulator)]


@asynccontextmanager
async def publishing(
    platform: FakePlatform, controller: str | None = None
) -> AsyncIterator[tuple[Rig, Observers, Recorder, RigStatePublisher]]:
    recorder = Recorder()
    observers = Observers(8, lambda: lambda _event: True)
    async with open_rig(platform) as rig, trio.open_nursery() as nursery:
        publisher = RigStatePublisher(rig, recorder, observers, lambda: controller, EStopState())
        await nursery.start(publisher.run)
        try:
            yield rig, observers, recorder, publisher
        finally:
            nursery.cancel_scope.cancel()


async def test_with_no_observer_the_publisher_reads_and_sends_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    platform = counting_platform()
    async with publishing(platform) as (_rig, observers, recorder, publisher):
        await trio.sleep(10)
        assert reads(platform) == [0] * 8
        assert recorder.sent == {}
        assert publisher.pushes == 0
        observers.admit("a", "127.0.0.1:1", "")
        await trio.sleep(1)
        observers.leave("a", "test")
        await trio.sleep(0.1)  # the last tick in flight ends
        before, pushes = reads(platform), publisher.pushes
        await trio.sleep(10)
        assert reads(platform) == before
        assert publisher.pushes == pushes


async def test_unpolled_positions_are_read_five_times_a_second(
    autojump_clock: trio.testing.MockClock,
) -> None:
    platform = counting_platform()
    async with publishing(platform) as (_rig, observers, _recorder, _publisher):
        observers.admit("a", "127.0.0.1:1", "")
        await trio.sleep(10)
        for count in reads(platform):
            # One read every 200 ms, the first at once: 50 or 51 in 10 s.
            assert 50 <= count <= 51


async def test_a_polling_client_means_no_extra_device_reads(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Pinpoint polls every manipulator; the publisher shows those readings instead."""
    platform = counting_platform()
    async with publishing(platform) as (rig, observers, recorder, _publisher):
        client_reads = 0

        async def poll(manipulator_id: str) -> None:
            nonlocal client_reads
            while True:
                result = await rig.handles[manipulator_id].get_position()
                assert not result.error
                client_reads += 1
                await trio.sleep(0.1)

        async with trio.open_nursery() as nursery:
            for manipulator_id in rig.ids:
                nursery.start_soon(poll, manipulator_id)
            await trio.sleep(0.05)  # every manipulator has been read once
            observers.admit("a", "127.0.0.1:1", "")
            await trio.sleep(10)
            nursery.cancel_scope.cancel()
        assert sum(reads(platform)) == client_reads
        assert recorder.sent["a"], "the observer was sent the polled positions"


async def test_a_moving_probe_is_pushed_at_most_twenty_times_a_second_and_seen_moving(
    autojump_clock: trio.testing.MockClock,
) -> None:
    platform = counting_platform()
    async with publishing(platform) as (rig, observers, recorder, publisher):
        observers.admit("a", "127.0.0.1:1", "")
        await trio.sleep(1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rig.handles["3"].move_depth, 10.0, 2.0)  # 5 s of motion
            await trio.sleep(4)
            nursery.cancel_scope.cancel()
        times = [t for t, _state in recorder.sent["a"]]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 0.05 - 1e-9
        depths = [s["Manipulators"][3]["Position"]["w"] for t, s in recorder.sent["a"] if t > 1.5]
        assert depths == sorted(depths) and depths[-1] - depths[0] > 4
        # The probe's position changes on every refresh: >= 5 pushes a second.
        assert len(depths) >= 2.5 * 5
        states = {s["Manipulators"][3]["State"] for t, s in recorder.sent["a"] if 1.5 < t < 4.5}
        assert states == {"moving"}
        assert publisher.pushes <= 20 * 5 + 1


async def test_a_quiet_rig_is_still_pushed_once_a_second(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with publishing(FakePlatform()) as (_rig, observers, recorder, _publisher):
        observers.admit("a", "127.0.0.1:1", "")
        await trio.sleep(10.01)
        assert 10 <= len(recorder.sent["a"]) <= 11


async def test_a_stalled_observer_does_not_hold_up_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with publishing(FakePlatform()) as (_rig, observers, recorder, _publisher):
        recorder.stall.add("slow")
        observers.admit("slow", "127.0.0.1:1", "")
        observers.admit("fast", "127.0.0.1:2", "")
        await trio.sleep(5.01)
        assert "slow" not in recorder.sent
        assert len(recorder.sent["fast"]) >= 5


async def test_a_new_observer_is_sent_the_state_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with publishing(FakePlatform(), controller="127.0.0.1:4242") as (
        _rig,
        observers,
        recorder,
        _publisher,
    ):
        observers.admit("a", "127.0.0.1:1", "")
        await trio.sleep(2.3)
        joined = trio.current_time()
        observers.admit("b", "127.0.0.1:2", "")
        await trio.sleep(0.2)
        first_time, first = recorder.sent["b"][0]
        assert first_time - joined <= 0.05 + 1e-9
        assert first["Controller"] == "127.0.0.1:4242"
        assert [m["Id"] for m in first["Manipulators"]] == [str(i) for i in range(8)]
