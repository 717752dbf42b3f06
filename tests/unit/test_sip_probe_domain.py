"""The room prober's pure parts: which hosts may be probed, the OPTIONS request, reading a response, the schedule."""

from __future__ import annotations

import ipaddress
import random

import pytest

from controlplane.rooms.sip import (
    build_options,
    jitter_schedule,
    parse_response,
    retransmit_offsets,
    valid_probe_uri,
)
from controlplane.rooms.sip_probe import target_allowed

ROOMS = [ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("2001:db8:20::/48")]


# --- target_allowed -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["10.20.0.5", "10.20.255.254", "2001:db8:20::5", "2001:DB8:20:0::5",
                                  "::ffff:10.20.0.5"])
def test_addresses_inside_an_allowed_network_are_allowed(host: str) -> None:
    assert target_allowed(host, ROOMS)


@pytest.mark.parametrize("host", ["10.21.0.5", "192.168.0.1", "2001:db8:21::5", "8.8.8.8"])
def test_addresses_outside_every_allowed_network_are_refused(host: str) -> None:
    assert not target_allowed(host, ROOMS)


@pytest.mark.parametrize("host", ["localhost", "room1.vc.go.kr", "", " 10.20.0.5", "10.20.0.5 ", "10.20.0.5:5060",
                                  "[2001:db8:20::5]", "fe80::1%eth0", "2001:db8:20::5%1", "0x0a140005", "10.20.5",
                                  "012.020.000.005", "http://10.20.0.5/"])
def test_only_ip_literals_are_probed_never_names(host: str) -> None:
    assert not target_allowed(host, [*ROOMS, ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")])


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", "169.254.169.254", "fe80::1",
                                  "224.0.0.1", "239.1.2.3", "ff02::1", "0.0.0.0", "::", "255.255.255.255",
                                  "240.0.0.1"])
def test_special_addresses_need_more_than_a_broad_network(host: str) -> None:
    everything = [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
    assert not target_allowed(host, everything)


@pytest.mark.parametrize(("host", "network"), [
    ("127.0.0.1", "127.0.0.0/8"), ("127.0.0.1", "127.0.0.1/32"), ("::1", "::1/128"),
    ("::ffff:127.0.0.1", "127.0.0.0/8"), ("169.254.10.1", "169.254.10.0/24"), ("fe80::1", "fe80::/64"),
    ("239.1.2.3", "239.0.0.0/8"),
])
def test_special_addresses_pass_when_their_own_range_is_allowed_explicitly(host: str, network: str) -> None:
    assert target_allowed(host, [ipaddress.ip_network(network)])


def test_an_explicit_loopback_network_allows_no_other_special_range() -> None:
    loopback = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    for host in ("169.254.169.254", "0.0.0.0", "::", "fe80::1", "224.0.0.1", "10.20.0.5"):
        assert not target_allowed(host, loopback)


def test_nothing_is_allowed_without_networks() -> None:
    assert not target_allowed("10.20.0.5", [])
    assert not target_allowed("127.0.0.1", [])


def test_a_network_of_the_other_family_does_not_match() -> None:
    assert not target_allowed("10.20.0.5", [ipaddress.ip_network("::/0")])
    assert not target_allowed("2001:db8:20::5", [ipaddress.ip_network("0.0.0.0/0")])


# --- the OPTIONS request ------------------------------------------------------------------------------------------

def _request(**overrides: object) -> bytes:
    values: dict[str, object] = {"call_id": "c0ffee42", "branch": "z9hG4bKc0ffee42", "from_tag": "t1",
                                 "local_host": "10.0.0.9", "local_port": 40000}
    values.update(overrides)
    return build_options("sip:room1@vc.go.kr", **values)  # type: ignore[arg-type]


def test_the_options_request_has_every_mandatory_header() -> None:
    text = _request().decode()
    lines = text.split("\r\n")
    assert lines[0] == "OPTIONS sip:room1@vc.go.kr SIP/2.0"
    assert "Via: SIP/2.0/UDP 10.0.0.9:40000;branch=z9hG4bKc0ffee42;rport" in lines
    assert "Max-Forwards: 70" in lines
    assert "From: <sip:probe@10.0.0.9>;tag=t1" in lines
    assert "To: <sip:room1@vc.go.kr>" in lines
    assert "Call-ID: c0ffee42" in lines
    assert "CSeq: 1 OPTIONS" in lines
    assert "Contact: <sip:probe@10.0.0.9:40000>" in lines
    assert "Content-Length: 0" in lines
    assert text.endswith("\r\n\r\n") and text.count("\r\n\r\n") == 1


def test_an_ipv6_local_address_is_bracketed() -> None:
    text = _request(local_host="2001:db8::9").decode()
    assert "Via: SIP/2.0/UDP [2001:db8::9]:40000;branch=" in text
    assert "Contact: <sip:probe@[2001:db8::9]:40000>" in text
    assert "From: <sip:probe@[2001:db8::9]>;tag=t1" in text


@pytest.mark.parametrize("uri", ["sip:room@vc.go.kr\r\nX-Evil: 1", "sip:room@vc.go.kr>", "sip:a b@vc", "sips:room@vc",
                                 "tel:+8221234567", "http://vc/", "sip:@vc", "sip:room@", "sip:room@vc\x00",
                                 "sip:room\"@vc", "sip:" + "a" * 65 + "@vc"])
def test_uris_that_could_break_the_request_are_refused(uri: str) -> None:
    assert not valid_probe_uri(uri)
    with pytest.raises(ValueError):
        build_options(uri, call_id="c", branch="z9hG4bKc", from_tag="t", local_host="10.0.0.9", local_port=1)


@pytest.mark.parametrize("uri", ["sip:room1@vc.go.kr", "sip:room-1.a_b@10.20.0.5", "sip:room@10.20.0.5:5070",
                                 "sip:room@[2001:db8::5]", "sip:room@vc.go.kr;transport=udp"])
def test_ordinary_sip_uris_are_accepted(uri: str) -> None:
    assert valid_probe_uri(uri)


@pytest.mark.parametrize("overrides", [{"branch": "abc"}, {"call_id": "a\r\nb"}, {"from_tag": "t 1"},
                                       {"local_host": "host.example"}, {"call_id": ""}])
def test_tokens_and_addresses_are_checked(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _request(**overrides)


# --- reading a response -----------------------------------------------------------------------------------------

OK = (b"SIP/2.0 200 OK\r\n"
      b"Via: SIP/2.0/UDP 10.0.0.9:40000;branch=z9hG4bKc0ffee42;rport=40000;received=10.0.0.9\r\n"
      b"Via: SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKsecond\r\n"
      b"From: <sip:probe@10.0.0.9>;tag=t1\r\nTo: <sip:room1@vc.go.kr>;tag=x\r\n"
      b"Call-ID: c0ffee42\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")


def test_a_200_gives_status_call_id_top_branch_and_method() -> None:
    response = parse_response(OK)
    assert response is not None
    assert (response.status, response.call_id, response.branch, response.cseq_method) == (
        200, "c0ffee42", "z9hG4bKc0ffee42", "OPTIONS")


def test_compact_and_lower_case_headers_and_bare_lf_are_read() -> None:
    compact = (b"SIP/2.0 404 Not Found\n"
               b"v: SIP/2.0/UDP 10.0.0.9:40000 ; BRANCH=z9hG4bKabc , SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKz\n"
               b"i:   abc@host  \ncseq: 7 options\n l: folded continuation\n\n")
    response = parse_response(compact)
    assert response is not None
    assert (response.status, response.call_id, response.branch, response.cseq_method) == (
        404, "abc@host", "z9hG4bKabc", "OPTIONS")


@pytest.mark.parametrize("status", [100, 180, 202, 302, 404, 486, 503, 603])
def test_every_status_class_is_read(status: int) -> None:
    response = parse_response(OK.replace(b"200 OK", f"{status} Whatever".encode()))
    assert response is not None and response.status == status


def test_a_status_line_without_a_reason_is_read() -> None:
    response = parse_response(OK.replace(b"SIP/2.0 200 OK\r\n", b"SIP/2.0 200\r\n"))
    assert response is not None and response.status == 200


@pytest.mark.parametrize("data", [
    b"", b"\x00\xff\xfe\x80", b"SIP/2.0", b"SIP/2.0 200 OK\r\n\r\n", b"SIP/2.0 200 OK\r\nCall-ID: \r\n\r\n",
    b"SIP/2.0 2000 OK\r\nCall-ID: a\r\n\r\n", b"SIP/2.0 099 OK\r\nCall-ID: a\r\n\r\n",
    b"SIP/2.0 700 OK\r\nCall-ID: a\r\n\r\n", b"SIP/3.0 200 OK\r\nCall-ID: a\r\n\r\n",
    b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: a\r\n\r\n", OK[: len(OK) // 2], OK[:-2],
    b"SIP/2.0 200 OK\r\nCall-ID: a\r\n" + b"X: " + b"a" * 70_000 + b"\r\n\r\n",
])
def test_anything_else_is_none_never_an_exception(data: bytes) -> None:
    assert parse_response(data) is None


def test_random_bytes_never_raise() -> None:
    rng = random.Random(3261)
    for _ in range(2000):
        size = rng.randrange(0, 300)
        blob = bytes(rng.randrange(256) for _ in range(size))
        parse_response(b"SIP/2.0 200 OK\r\n" + blob)
        parse_response(blob)
    for cut in range(len(OK)):
        parse_response(OK[:cut] + b"\r\n\r\n")


def test_non_utf8_header_values_are_read_without_failing() -> None:
    response = parse_response(OK.replace(b"Call-ID: c0ffee42", b"Call-ID: c0\xff\xfe"))
    assert response is not None and response.call_id.startswith("c0")


# --- the schedule -------------------------------------------------------------------------------------------------

def test_the_schedule_spreads_one_send_per_slot_of_the_cycle() -> None:
    offsets = jitter_schedule(5000, 30.0, random.Random(1))
    assert len(offsets) == 5000
    assert all(0 <= offset < 30.0 for offset in offsets)
    slots = sorted(int(offset // (30.0 / 5000)) for offset in offsets)
    assert slots == list(range(5000))  # exactly one send in every 6 ms slot: never a burst


def test_the_schedule_is_random_but_reproducible() -> None:
    first = jitter_schedule(100, 10.0, random.Random(7))
    assert first == jitter_schedule(100, 10.0, random.Random(7))
    assert first != jitter_schedule(100, 10.0, random.Random(8))
    assert first != sorted(first)  # targets do not go in catalogue order


def test_a_zero_cycle_sends_everything_at_once_and_nothing_is_nothing() -> None:
    assert jitter_schedule(3, 0.0, random.Random(1)) == [0.0, 0.0, 0.0]
    assert jitter_schedule(0, 10.0, random.Random(1)) == []
    with pytest.raises(ValueError):
        jitter_schedule(3, -1.0, random.Random(1))


def test_retransmissions_divide_the_timeout() -> None:
    assert retransmit_offsets(2.0, 0) == []
    assert retransmit_offsets(2.0, 1) == [1.0]
    assert retransmit_offsets(3.0, 2) == [1.0, 2.0]
    with pytest.raises(ValueError):
        retransmit_offsets(0, 1)
