"""The simulated bridge speaks the USB framing New Scale's library uses, and nothing else.

Raw bytes through the pty, no driver: a high-bit bridge command is answered; a
plain ``TR`` before it (the PoE box's form) is a recorded violation, never
answered; the stage runs at the speed its ``40`` registers produce on its own
closed-loop interval.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from drivers.newscale.codec import Violation, encode_bridge, encode_stage, select_stage
from drivers.newscale.sim import NewScaleSim
from tests.serial_e2e import raw_pty


@pytest.fixture
async def port(nursery: trio.Nursery) -> AsyncIterator[tuple[NewScaleSim, trio.lowlevel.FdStream]]:
    sim = NewScaleSim()
    async with raw_pty(await nursery.start(sim.run)) as stream:
        yield sim, stream


async def ask(stream: trio.lowlevel.FdStream, data: bytes) -> bytes:
    """Write ``data`` and return what comes back within 0.2 s (b"" for silence)."""
    await stream.send_all(data)
    received = b""
    with trio.move_on_after(0.2):
        while not received.endswith(b"\r"):
            received += await stream.receive_some(256)
    return received


async def test_a_high_bit_bridge_command_is_answered_in_plain_ascii(
    port: tuple[NewScaleSim, trio.lowlevel.FdStream],
) -> None:
    sim, stream = port
    assert await ask(stream, select_stage(2)) == b"<A0 02 1>\r"
    assert await ask(stream, b"<01>\r") == b"<01 1 0001 2.3.0 M3-LS-3.4-15>\r"
    assert sim.violations == []


async def test_a_tr_prefix_on_the_usb_link_is_a_violation_and_is_not_answered(
    port: tuple[NewScaleSim, trio.lowlevel.FdStream],
) -> None:
    sim, stream = port
    assert await ask(stream, b"TR") == b""
    assert sim.violations == [Violation(raw=b"TR", reason="bytes outside a frame")]
    assert sim.received == []


async def test_a_plain_text_bridge_command_is_a_stage_command_nobody_answers(
    port: tuple[NewScaleSim, trio.lowlevel.FdStream],
) -> None:
    """``TR<A0 01>`` in plain text (PoE form): ``TR`` is a violation, ``<A0 01>`` no select."""
    sim, stream = port
    assert await ask(stream, b"TR<A0 01>\r") == b""
    assert [v.raw for v in sim.violations] == [b"TR"]
    assert sim.selected is None


async def test_a_bridge_command_with_a_plain_byte_is_a_violation(
    port: tuple[NewScaleSim, trio.lowlevel.FdStream],
) -> None:
    sim, stream = port
    raw = encode_bridge("A0", "01")
    await ask(stream, raw[:-1] + b"\r")
    assert sim.violations and sim.violations[0].reason.startswith("bridge command with a byte")
    assert sim.selected is None


async def test_the_stage_runs_at_the_speed_its_registers_produce_on_its_interval(
    port: tuple[NewScaleSim, trio.lowlevel.FdStream],
) -> None:
    sim, stream = port
    await ask(stream, select_stage(1))
    await ask(stream, b"<01>\r")
    # V = 0x100: 256/256 = 1 count per 2 intervals of 156 x 3.2 us = 499.2 us each.
    assert await ask(stream, encode_stage("40", "000100", "000001", "000001", "0002"))
    expected_counts_s = 256 / 256 / (2 * 156 * 3.2e-6)
    assert sim.stages[1].speed_counts_s == pytest.approx(expected_counts_s)
    assert sim.violations == []
