"""The sans-IO session state machine, driven with plain values and a fake ``now``."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.engineio.config import EngineIOConfig
from protocol.engineio.packets import Packet, PacketType
from protocol.engineio.session import (
    Close,
    EngineIOSession,
    Message,
    Ping,
    Pong,
    SessionState,
    Upgrade,
    UpgradeAborted,
    UpgradeProbed,
)
from protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from protocol.transport import CloseReason

CONFIG = EngineIOConfig(ping_interval_ms=300, ping_timeout_ms=200, max_payload=1000)


def polling_session(now: float = 0.0) -> EngineIOSession:
    return EngineIOSession("sid1", CONFIG, "polling", now)


def state(session: EngineIOSession) -> SessionState:
    """Read the state through a call so the type checker does not pin it."""
    return session.state


def test_the_open_packet_has_exactly_the_five_handshake_keys() -> None:
    packet = polling_session().open_packet()
    assert packet.type is PacketType.OPEN
    assert isinstance(packet.data, str)
    assert json.loads(packet.data) == {
        "sid": "sid1",
        "upgrades": ["websocket"],
        "pingInterval": 300,
        "pingTimeout": 200,
        "maxPayload": 1000,
    }


def test_a_websocket_session_offers_no_upgrades() -> None:
    packet = EngineIOSession("s", CONFIG, "websocket", 0.0).open_packet()
    assert isinstance(packet.data, str)
    assert json.loads(packet.data)["upgrades"] == []


def test_an_unknown_transport_is_our_mistake() -> None:
    with pytest.raises(LocalProtocolError):
        EngineIOSession("s", CONFIG, "carrier-pigeon", 0.0)


def test_messages_become_message_events() -> None:
    session = polling_session()
    assert session.receive(Packet(PacketType.MESSAGE, "hi"), 0.1) == [Message("hi")]
    assert session.receive(Packet(PacketType.MESSAGE, b"\x00"), 0.1) == [Message(b"\x00")]


def test_a_ping_is_due_after_the_interval_and_not_before() -> None:
    session = polling_session(now=10.0)
    assert session.next_deadline() == pytest.approx(10.3)
    assert session.tick(10.29) == []
    assert session.tick(10.3) == [Ping()]


def test_no_pong_within_the_timeout_closes_with_ping_timeout() -> None:
    session = polling_session()
    assert session.tick(0.3) == [Ping()]
    assert session.next_deadline() == pytest.approx(0.5)
    assert session.tick(0.49) == []
    assert session.tick(0.5) == [Close(CloseReason.PING_TIMEOUT)]
    assert state(session) is SessionState.CLOSED
    assert session.tick(5.0) == []


def test_a_pong_cancels_the_timeout_and_schedules_the_next_ping() -> None:
    session = polling_session()
    session.tick(0.3)
    assert session.receive(Packet(PacketType.PONG), 0.4) == []
    assert session.tick(0.5) == []
    assert session.next_deadline() == pytest.approx(0.7)
    assert session.tick(0.7) == [Ping()]


def test_a_close_packet_closes_with_reason_client_once() -> None:
    session = polling_session()
    assert session.receive(Packet(PacketType.CLOSE), 0.0) == [Close(CloseReason.CLIENT)]
    assert session.closed
    assert session.close(CloseReason.SERVER) == []
    assert session.close_reason is CloseReason.CLIENT


def test_receiving_on_a_closed_session_is_our_mistake() -> None:
    session = polling_session()
    session.close(CloseReason.SERVER)
    with pytest.raises(LocalProtocolError):
        session.receive(Packet(PacketType.MESSAGE, "late"), 0.0)


@pytest.mark.parametrize("kind", [PacketType.PING, PacketType.OPEN, PacketType.UPGRADE])
def test_packets_a_v4_client_never_sends_are_remote_errors(kind: PacketType) -> None:
    with pytest.raises(RemoteProtocolError):
        polling_session().receive(Packet(kind), 0.0)


def test_noops_are_accepted_and_ignored() -> None:
    assert polling_session().receive(Packet(PacketType.NOOP), 0.0) == []


def test_upgrade_goes_probe_then_upgrade_and_switches_transport() -> None:
    session = polling_session()
    session.start_upgrade()
    assert state(session) is SessionState.PROBING
    events = session.receive_upgrade(Packet(PacketType.PING, "probe"), 0.1)
    assert events == [Pong("probe"), UpgradeProbed()]
    assert state(session) is SessionState.UPGRADING
    assert session.transport == "polling"
    assert session.receive_upgrade(Packet(PacketType.UPGRADE), 0.2) == [Upgrade()]
    assert state(session) is SessionState.OPEN
    assert session.transport == "websocket"


def test_a_second_upgrade_attempt_is_refused() -> None:
    session = polling_session()
    session.start_upgrade()
    with pytest.raises(RemoteProtocolError):
        session.start_upgrade()


def test_an_upgraded_session_cannot_upgrade_again() -> None:
    session = EngineIOSession("s", CONFIG, "websocket", 0.0)
    with pytest.raises(RemoteProtocolError):
        session.start_upgrade()


def test_anything_but_the_probe_on_a_new_websocket_is_a_remote_error() -> None:
    session = polling_session()
    session.start_upgrade()
    with pytest.raises(RemoteProtocolError):
        session.receive_upgrade(Packet(PacketType.UPGRADE), 0.0)


def test_anything_but_upgrade_after_the_probe_is_a_remote_error() -> None:
    session = polling_session()
    session.start_upgrade()
    session.receive_upgrade(Packet(PacketType.PING, "probe"), 0.0)
    with pytest.raises(RemoteProtocolError):
        session.receive_upgrade(Packet(PacketType.MESSAGE, "early"), 0.0)


def test_upgrade_packets_without_an_upgrade_in_progress_are_our_mistake() -> None:
    with pytest.raises(LocalProtocolError):
        polling_session().receive_upgrade(Packet(PacketType.PING, "probe"), 0.0)


def test_an_aborted_upgrade_returns_to_plain_polling_and_may_be_retried() -> None:
    session = polling_session()
    session.start_upgrade()
    session.receive_upgrade(Packet(PacketType.PING, "probe"), 0.0)
    assert session.abort_upgrade() == [UpgradeAborted()]
    assert state(session) is SessionState.OPEN
    assert session.transport == "polling"
    assert session.abort_upgrade() == []
    session.start_upgrade()


def test_messages_still_flow_on_polling_while_the_upgrade_is_probing() -> None:
    session = polling_session()
    session.start_upgrade()
    session.receive_upgrade(Packet(PacketType.PING, "probe"), 0.0)
    assert session.receive(Packet(PacketType.MESSAGE, "m"), 0.0) == [Message("m")]


_any_packet = st.builds(
    Packet,
    st.sampled_from(list(PacketType)),
    st.one_of(st.sampled_from(["", "probe"]), st.text(max_size=5)),
)
_steps = st.lists(
    st.tuples(st.sampled_from(["receive", "upgrade", "start", "abort", "tick"]), _any_packet),
    max_size=30,
)


@given(_steps)
def test_any_sequence_of_inputs_raises_only_protocol_errors(
    steps: list[tuple[str, Packet]],
) -> None:
    session = polling_session()
    now = 0.0
    for action, packet in steps:
        now += 0.1
        try:
            if action == "receive":
                session.receive(packet, now)
            elif action == "upgrade":
                session.receive_upgrade(packet, now)
            elif action == "start":
                session.start_upgrade()
            elif action == "abort":
                session.abort_upgrade()
            else:
                session.tick(now)
        except ProtocolError:
            pass
        assert session.transport in ("polling", "websocket")
        assert session.closed == (state(session) is SessionState.CLOSED)
