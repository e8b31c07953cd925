"""The access policy's rules, decision by decision (the wire tests live in test_security_wire)."""

from __future__ import annotations

import logging
import re
import socket

import pytest

from ephysd.security import (
    AccessPolicy,
    PolicyError,
    RequestRateLimiter,
    TokenBucket,
    normalize_origin,
)
from protocol.transport import RequestInfo


def request(remote: str = "127.0.0.1", **headers: str) -> RequestInfo:
    return RequestInfo(
        remote_host=remote,
        remote_port=50000,
        path="/socket.io/",
        query={"EIO": "4", "transport": "websocket"},
        headers={k.replace("_", "-"): v for k, v in headers.items()},
    )


def test_default_policy_allows_loopback_only() -> None:
    policy = AccessPolicy.from_config()
    assert policy.check_request(request("127.0.0.1")) is None
    assert policy.check_request(request("127.5.6.7")) is None
    assert policy.check_request(request("::1")) is None
    assert policy.check_request(request("::ffff:127.0.0.1")) is None
    assert policy.check_request(request("10.0.0.5")) == "Client address not allowed."
    assert policy.check_request(request("192.168.1.2")) is not None
    assert policy.check_request(request("not-an-ip")) is not None


def test_allow_list_of_networks_replaces_loopback() -> None:
    policy = AccessPolicy.from_config(allow=["10.0.0.0/8", "fd00::/8"])
    assert policy.check_request(request("10.20.30.40")) is None
    assert policy.check_request(request("fd00::1")) is None
    assert policy.check_request(request("127.0.0.1")) is not None


def test_bad_allow_entries_are_one_clear_error() -> None:
    with pytest.raises(PolicyError, match=re.escape("'10.0.0.0/33'")):
        AccessPolicy.from_config(allow=["10.0.0.0/33"])
    with pytest.raises(PolicyError, match="empty"):
        AccessPolicy.from_config(allow=[])


def test_browser_origin_must_be_on_the_allowlist() -> None:
    policy = AccessPolicy.from_config(allow_origin=["https://pinpoint.allenneuraldynamics.org"])
    assert policy.check_request(request(origin="https://pinpoint.allenneuraldynamics.org")) is None
    assert (
        policy.check_request(request(origin="HTTPS://Pinpoint.AllenNeuralDynamics.org:443")) is None
    )
    assert policy.check_request(request(origin="https://evil.example")) == "Origin not allowed."
    assert policy.check_request(request(origin="http://localhost:8000")) is not None
    assert policy.check_request(request(origin="null")) is not None
    assert policy.check_request(request(origin="x" * 10_000)) is not None


def test_a_page_of_the_daemons_own_address_is_allowed_with_no_allowlist() -> None:
    policy = AccessPolicy.from_config()
    for host in ("127.0.0.1:3000", "[::1]:3000", "localhost:3000", "127.0.0.1"):
        assert policy.check_request(request(origin=f"http://{host}", host=host)) is None, host
    # Compared as browsers send them: case and the default port do not matter.
    shouted = request(origin="HTTP://LocalHost:3000", host="localhost:3000")
    assert policy.check_request(shouted) is None
    assert policy.check_request(request(origin="http://127.0.0.1", host="127.0.0.1:80")) is None


def test_another_port_or_scheme_on_the_same_host_is_another_origin() -> None:
    policy = AccessPolicy.from_config()
    assert policy.check_request(request(origin="http://127.0.0.1:8000", host="127.0.0.1:3000"))
    assert policy.check_request(request(origin="https://127.0.0.1:3000", host="127.0.0.1:3000"))
    assert policy.check_request(request(origin="http://localhost:3000", host="127.0.0.1:3000"))
    assert policy.check_request(request(origin="http://127.0.0.1:3000")) == "Origin not allowed."
    assert policy.check_request(request(origin="null", host="null"))


def test_a_domain_pointed_at_the_rig_is_not_its_own_origin() -> None:
    # DNS rebinding: evil.example re-resolved to 127.0.0.1 after its page loaded.
    policy = AccessPolicy.from_config()
    rebound = request(origin="http://evil.example:3000", host="evil.example:3000")
    assert policy.check_request(rebound) == "Origin not allowed."


def test_the_listen_host_and_this_computers_name_are_its_own_addresses() -> None:
    policy = AccessPolicy.from_config(listen_host="rig-7.lab.example")
    named = request(origin="http://rig-7.lab.example:3000", host="Rig-7.lab.example:3000")
    assert policy.check_request(named) is None
    name = socket.gethostname()
    assert policy.check_request(request(origin=f"http://{name}:3000", host=f"{name}:3000")) is None
    assert AccessPolicy.from_config().check_request(named) == "Origin not allowed."


def test_requests_without_origin_come_from_native_clients_and_are_allowed() -> None:
    policy = AccessPolicy.from_config()
    assert policy.check_request(request()) is None
    assert policy.check_request(request(sec_fetch_site="none")) is None


def test_cross_site_browser_request_without_origin_is_refused() -> None:
    policy = AccessPolicy.from_config()
    assert policy.check_request(request(sec_fetch_site="cross-site")) is not None
    assert policy.check_request(request(sec_fetch_site="same-site")) is not None


def test_wildcard_origin_is_an_explicit_opt_in() -> None:
    policy = AccessPolicy.from_config(allow_origin=["*"])
    assert policy.check_request(request(origin="https://anything.example")) is None


def test_origin_allowlist_can_be_replaced_and_bad_lists_change_nothing() -> None:
    policy = AccessPolicy.from_config(allow_origin=["http://a.example"])
    policy.update_origins(["http://b.example:8080"])
    assert policy.check_request(request(origin="http://a.example")) is not None
    assert policy.check_request(request(origin="http://b.example:8080")) is None
    with pytest.raises(PolicyError):
        policy.update_origins(["http://c.example", "file:///etc/passwd"])
    assert policy.check_request(request(origin="http://b.example:8080")) is None


def test_origins_are_normalized_to_what_browsers_send() -> None:
    assert normalize_origin("HTTP://Example.ORG:80/") == "http://example.org"
    assert normalize_origin("https://[::1]:8443") == "https://[::1]:8443"
    for bad in ("example.org", "ftp://x", "https://x/path", "https://x:99999"):
        with pytest.raises(PolicyError):
            normalize_origin(bad)


def test_token_is_required_in_the_auth_payload_when_configured() -> None:
    policy = AccessPolicy.from_config(token="s3cret-rig-token")
    assert policy.check_auth({"token": "s3cret-rig-token"}) is None
    assert policy.check_auth({"token": "s3cret-rig-tokeN"}) == "Invalid token."
    assert policy.check_auth({"token": 12}) is not None
    assert policy.check_auth({}) is not None
    assert policy.check_auth(None) is not None
    assert policy.check_auth("s3cret-rig-token") is not None
    assert policy.check_auth({"token": "x" * 100_000}) is not None


def test_a_token_with_a_lone_surrogate_is_wrong_not_a_crash() -> None:
    policy = AccessPolicy.from_config(token="s3cret")
    assert policy.check_auth({"token": "\ud800"}) == "Invalid token."


def test_a_flood_of_refusals_is_logged_once_a_second(caplog: pytest.LogCaptureFixture) -> None:
    policy = AccessPolicy.from_config()
    with caplog.at_level(logging.WARNING, logger="ephysd.security"):
        for _ in range(1000):
            assert policy.check_request(request(origin="https://evil.example")) is not None
    assert len(caplog.records) == 1
    assert "evil.example" in caplog.records[0].getMessage()


def test_without_a_token_any_auth_payload_is_accepted() -> None:
    policy = AccessPolicy.from_config()
    assert policy.check_auth(None) is None
    assert policy.check_auth({"token": "whatever"}) is None


def test_an_empty_token_is_a_configuration_error() -> None:
    with pytest.raises(PolicyError):
        AccessPolicy.from_config(token="")


def test_token_bucket_serves_bursts_at_once_then_makes_the_rest_wait_their_turn() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0, max_debt=100)
    assert [bucket.reserve(0.0) for _ in range(5)] == pytest.approx([0, 0, 0, 0.1, 0.2])
    # Time pays the debt back: at 0.25 s two tokens have come, the next waits 0.05 s.
    assert bucket.reserve(0.25) == pytest.approx(0.05)
    # A long pause refills only up to the burst.
    assert [bucket.reserve(100.0) for _ in range(4)] == pytest.approx([0, 0, 0, 0.1])


def test_token_bucket_never_makes_a_request_wait_longer_than_its_debt_cap() -> None:
    bucket = TokenBucket(rate=2, burst=1, now=0.0, max_debt=4)
    waits = [bucket.reserve(0.0) for _ in range(10)]
    assert waits == pytest.approx([0, 0.5, 1.0, 1.5, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0])


def test_token_bucket_survives_a_clock_going_backwards() -> None:
    bucket = TokenBucket(rate=1, burst=1, now=10.0, max_debt=10)
    assert bucket.reserve(10.0) == 0
    assert bucket.reserve(5.0) == pytest.approx(1.0)
    assert bucket.reserve(12.0) == 0


def test_the_budget_slows_a_burst_down_without_refusing_it_and_never_delays_a_stop() -> None:
    now = [0.0]
    limiter = RequestRateLimiter(rate=100, burst=5, clock=lambda: now[0], max_wait_s=1.0)
    assert [limiter.delay_s("get_position") for _ in range(5)] == [0.0] * 5
    assert limiter.delay_s("set_position") == pytest.approx(0.01)
    for event in ("stop", "stop_all", "abort_jackhammer"):
        assert all(limiter.delay_s(event) == 0.0 for _ in range(100))
    # 31 more at once: each waits its turn, none is refused.
    waits = [limiter.delay_s("get_position") for _ in range(31)]
    assert None not in waits
    assert waits == pytest.approx([0.01 * n for n in range(2, 33)])
    assert limiter.slowed == 32 and limiter.refused == 0


def test_a_flood_past_the_waiting_cap_is_refused_at_once_until_the_waits_end() -> None:
    """Each waiting request holds a handler slot of its connection; with all of
    them taken, the client's stop would not even be read. So past ``max_waiting``
    waiting requests the next ones are refused, and served again once those wait
    no more; stops pass throughout."""
    now = [0.0]
    limiter = RequestRateLimiter(
        rate=10, burst=1, clock=lambda: now[0], max_wait_s=10.0, max_waiting=4
    )
    assert limiter.delay_s("get_position") == 0.0
    waits = [limiter.delay_s("get_position") for _ in range(4)]
    assert waits == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert [limiter.delay_s("get_position") for _ in range(3)] == [None] * 3
    assert limiter.delay_s("stop") == limiter.delay_s("stop_all") == 0.0
    assert limiter.refused == 3
    now[0] = 0.1  # the first waiting request is served: room for one more
    assert limiter.delay_s("get_position") == pytest.approx(0.4)
    assert limiter.delay_s("get_position") is None
    now[0] = 1.0  # every wait is over and the debt repaid
    assert limiter.delay_s("get_position") == 0.0


def test_the_default_budget_never_slows_a_client_polling_as_fast_as_the_daemon_answers() -> None:
    """Pinpoint's shape, 8 reads in flight back to back: even at 50,000 answers a
    second (above what the daemon serves one client) nothing ever waits."""
    now = [0.0]
    limiter = RequestRateLimiter(clock=lambda: now[0])
    for tick in range(200_000):
        now[0] = tick / 50_000
        assert limiter.delay_s("get_position") == 0.0
    assert limiter.slowed == 0
