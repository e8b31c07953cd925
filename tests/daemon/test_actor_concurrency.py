"""Actors under concurrent load: reads during moves, stop, stop_all, supersede."""

from __future__ import annotations

import json

import trio
import trio.testing

from drivers.fake import FakePlatform
from ephysd.api import Api


def move(mid: str, x: float, speed: float, w: float = 0.0) -> str:
    return json.dumps(
        {"ManipulatorId": mid, "Position": {"x": x, "y": 0, "z": 0, "w": w}, "Speed": speed}
    )


async def position_x(api: Api, mid: str) -> float:
    answer = json.loads(await api.handle("get_position", [mid]))
    assert answer["Error"] == ""
    return float(answer["Position"]["x"])


async def test_get_position_sees_intermediate_points_while_another_manipulator_moves(
    api: Api,
) -> None:
    answers: dict[str, str] = {}

    async def do_move(mid: str, x: float) -> None:
        answers[mid] = await api.handle("set_position", [move(mid, x, speed=1.0)])

    samples: list[tuple[float, float]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(do_move, "0", 1.0)
        nursery.start_soon(do_move, "1", 1.0)
        for _ in range(8):
            await trio.sleep(0.08)
            samples.append((await position_x(api, "0"), await position_x(api, "1")))
    # Sampled at the same moments, both were part-way: the moves ran together
    # and reads were answered during them. (Load-proof: no wall-clock bound.)
    both_moving = [(a, b) for a, b in samples if 0.0 < a < 1.0 and 0.0 < b < 1.0]
    assert len(both_moving) >= 2
    xs = [a for a, _ in samples]
    assert xs == sorted(xs)
    for mid in ("0", "1"):
        assert json.loads(answers[mid]) == {
            "Position": {"x": 1.0, "y": 0.0, "z": 0.0, "w": 0.0},
            "Error": "",
        }


async def test_stop_ends_a_ten_second_move_at_once_and_halts_the_device(
    api: Api, platform: FakePlatform
) -> None:
    acked = trio.Event()
    answer: list[str] = []
    ack_time: list[float] = []

    async def long_move() -> None:
        answer.append(await api.handle("set_position", [move("0", 10.0, speed=1.0)]))
        ack_time.append(trio.current_time())
        acked.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(long_move)
        await trio.sleep(0.3)
        stop_requested = trio.current_time()
        assert await api.handle("stop", ["0"]) == ""
        with trio.fail_after(2):
            await acked.wait()
    # Generous bound: the issue asks for 50 ms on an idle machine.
    assert ack_time[0] - stop_requested < 0.05 * 4
    error = json.loads(answer[0])["Error"]
    assert error.startswith("Manipulator 0 did not reach target position on axis x.")
    assert platform.manipulators[0].halts >= 1
    stopped_at = await position_x(api, "0")
    assert 0.1 < stopped_at < 1.0
    await trio.sleep(0.1)
    assert await position_x(api, "0") == stopped_at


async def test_stop_is_not_queued_behind_other_requests(api: Api) -> None:
    acked = trio.Event()

    async def long_move() -> None:
        await api.handle("set_position", [move("0", 10.0, speed=1.0)])
        acked.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(long_move)
        await trio.sleep(0.05)
        for _ in range(50):
            nursery.start_soon(api.handle, "get_position", ["0"])
        assert await api.handle("stop", ["0"]) == ""
        with trio.fail_after(2):
            await acked.wait()


async def test_stop_all_stops_eight_moving_manipulators(api: Api, platform: FakePlatform) -> None:
    answers: dict[str, str] = {}

    async def long_move(mid: str) -> None:
        answers[mid] = await api.handle("set_position", [move(mid, 10.0, speed=1.0)])

    with trio.fail_after(3):
        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(long_move, str(i))
            await trio.sleep(0.2)
            assert await api.handle("stop_all", []) == ""
    for i in range(8):
        assert "did not reach target position" in json.loads(answers[str(i)])["Error"]
        assert platform.manipulators[i].halts >= 1
        assert 0.0 < await position_x(api, str(i)) < 1.0


async def test_new_move_supersedes_the_running_one(api: Api) -> None:
    answers: dict[str, str] = {}

    async def first() -> None:
        answers["first"] = await api.handle("set_position", [move("3", 10.0, speed=1.0)])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        await trio.sleep(0.2)
        answers["second"] = await api.handle("set_position", [move("3", 0.0, speed=100.0)])
    assert json.loads(answers["first"])["Error"] == (
        "Manipulator 3 move was superseded by a newer set_position or set_depth request."
    )
    assert json.loads(answers["second"]) == {
        "Position": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 0.0},
        "Error": "",
    }


async def test_nothing_moves_unless_asked(api: Api, platform: FakePlatform) -> None:
    await api.handle("stop_all", [])
    await trio.sleep(0.1)
    assert all(m.moves_started == 0 for m in platform.manipulators)


async def test_back_to_back_moves_are_decided_in_arrival_order(api: Api) -> None:
    """Three moves sent without waiting for acks: the last one sent is the one that runs."""
    answers: dict[float, str] = {}

    async def send(x: float) -> None:
        answers[x] = await api.handle("set_position", [move("6", x, speed=50.0)])

    async with trio.open_nursery() as nursery:
        for x in (3.0, 2.0, 1.0):
            nursery.start_soon(send, x)
            await trio.testing.wait_all_tasks_blocked()
    assert json.loads(answers[1.0])["Error"] == ""
    for x in (3.0, 2.0):
        assert "superseded" in json.loads(answers[x])["Error"]
    assert await position_x(api, "6") == 1.0
