"""The opening handshake by hand (RFC 6455 section 4), checked against websockets and h11."""

from __future__ import annotations

import asyncio
import base64
import random

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.utils import accept_key as websockets_accept_key

import wslab
from wslab import handshake as hs

from .conftest import run, seconds, serve_one_answer

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def good_request(**changes: str | None) -> bytes:
    """A valid upgrade request; ``changes`` replace (or, with None, drop) headers."""
    headers = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": RFC_KEY,
        "Sec-WebSocket-Version": "13",
    }
    request_line = changes.pop("request_line", None) or "GET / HTTP/1.1"
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return (request_line + "\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers.items()) + "\r\n").encode()


# The accept key (section 1.3, 4.2.2)


def test_accept_key_matches_the_rfc_example():
    """Section 1.3: dGhlIHNhbXBsZSBub25jZQ== -> s3pPLMBiTxaQ9kYGzzhZRbK+xOo=."""
    assert wslab.accept_key(RFC_KEY) == RFC_ACCEPT


def test_accept_key_agrees_with_websockets_for_many_random_keys():
    rng = random.Random(6455)
    for _ in range(500):
        key = base64.b64encode(rng.randbytes(16)).decode()
        assert wslab.accept_key(key) == websockets_accept_key(key)


def test_new_keys_are_16_random_bytes_in_base64():
    keys = {hs.new_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(len(base64.b64decode(k, validate=True)) == 16 for k in keys)


# Client side against a real websockets server (section 4.1)


async def handshake_with(url_host: str, port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(url_host, port)
    try:
        writer.write(request)
        await writer.drain()
        data = b""
        for _ in range(100):
            if hs.parse_response(data) is not None:
                return data
            chunk = await reader.read(4096)
            if not chunk:
                return data
            data += chunk
        raise AssertionError("no complete response head in 100 reads")
    finally:
        writer.close()


def test_hand_built_request_gets_a_101_from_websockets_and_the_response_checks_out():
    async def main():
        srv = await wslab.serve(wslab.handlers.echo, name="hs-echo", subprotocols=["chat.v2", "chat.v1"])
        try:
            request = hs.build_request(
                srv.url, subprotocols=["chat.v1", "chat.v2"],
                extensions=["permessage-deflate; client_max_window_bits"], origin="http://127.0.0.1:1",
            )
            data = await handshake_with(srv.host, srv.port, request)
            response = hs.check_response(data, request)
            assert response.status == 101
            assert response.headers["Sec-WebSocket-Protocol"] in ("chat.v1", "chat.v2")
            assert response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
            return response
        finally:
            await srv.aclose()

    run(main())


def test_hand_built_request_with_the_rfc_key_gets_the_rfc_accept_from_websockets():
    async def main():
        srv = await wslab.serve(wslab.handlers.echo, name="hs-echo")
        try:
            data = await handshake_with(srv.host, srv.port, hs.build_request(srv.url, key=RFC_KEY))
            return hs.parse_response(data)
        finally:
            await srv.aclose()

    response = run(main())
    assert response.headers["Sec-WebSocket-Accept"] == RFC_ACCEPT


REAL_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: " + RFC_ACCEPT.encode() + b"\r\n\r\n"
)


@pytest.mark.parametrize(
    "response, header",
    [
        (b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n", None),
        (REAL_101.replace(b"Upgrade: websocket\r\n", b""), "Upgrade"),
        (REAL_101.replace(b"Upgrade: websocket", b"Upgrade: websocket, h2c"), "Upgrade"),
        (REAL_101.replace(b"Upgrade: websocket", b"Upgrade: websocket\r\nUpgrade: h2c"), "Upgrade"),
        (REAL_101.replace(b"Upgrade: websocket", b"Upgrade: websockets"), "Upgrade"),
        (REAL_101.replace(b"Connection: Upgrade", b"Connection: keep-alive"), "Connection"),
        (REAL_101.replace(RFC_ACCEPT.encode(), b"x3JJHMbDL1EzLkh9GBhXDw=="), "Sec-WebSocket-Accept"),
        (REAL_101.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Protocol: superchat\r\n\r\n"), "Sec-WebSocket-Protocol"),
        (REAL_101.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: x-webkit-deflate-frame\r\n\r\n"), "Sec-WebSocket-Extensions"),
    ],
)
def test_client_rejects_a_wrong_response_and_names_the_header(response, header):
    """Section 4.1: the client fails the connection when the 101 does not match its request
    (an Upgrade that is not exactly 'websocket', in any case, too: 'websocket, h2c' is not a match)."""
    request = hs.build_request("ws://127.0.0.1:1/", key=RFC_KEY, subprotocols=["chat"])
    assert hs.check_response(REAL_101, request).status == 101
    with pytest.raises(hs.InvalidResponse) as caught:
        hs.check_response(response, request)
    assert caught.value.header == header
    assert caught.value.section == "4.1"
    assert isinstance(caught.value, wslab.HandshakeError)


# Server side: a tiny server on wslab.handshake, real websockets clients


async def tiny_server(origins=None, subprotocols=()):
    """A WebSocket server built only on wslab.handshake over asyncio streams.

    After the 101 it waits for the client's first bytes (its close frame) and
    answers with a close frame, 1000: just enough for a clean goodbye.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = b""
        try:
            for _ in range(100):
                request = hs.parse_request(data)
                if request is not None:
                    break
                chunk = await reader.read(4096)
                if not chunk:
                    return
                data += chunk
            else:
                return
            try:
                hs.check_request(request, origins=origins)
            except hs.HandshakeError as error:
                writer.write(hs.refusal(error))
                await writer.drain()
                return
            chosen = next((p for p in request.subprotocols if p in subprotocols), None)
            writer.write(hs.response_101(request, chosen))
            await writer.drain()
            await reader.read(4096)  # the client's close frame
            writer.write(b"\x88\x02\x03\xe8")  # close 1000, unmasked (section 5.5.1)
            await writer.drain()
        except hs.HandshakeError as error:
            writer.write(hs.refusal(error))
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def port_of(server) -> int:
    return server.sockets[0].getsockname()[1]


def test_a_real_websockets_client_completes_its_handshake_against_a_tiny_server():
    async def main():
        server = await tiny_server(subprotocols=("chat",))
        async with server:
            url = f"ws://127.0.0.1:{port_of(server)}/room"
            async with connect(url, subprotocols=["superchat", "chat"], close_timeout=seconds(2)) as ws:
                assert ws.subprotocol == "chat"
                assert ws.response.status_code == 101
            assert ws.close_code == 1000
            async with connect(url, compression=None, close_timeout=seconds(2)) as ws:
                assert ws.subprotocol is None

    run(main())


def test_the_tiny_server_refuses_a_cross_site_page_with_403():
    """Section 10.2: a server checks Origin against the pages it serves."""

    async def main():
        server = await tiny_server(origins=["http://127.0.0.1:8888"])
        async with server:
            url = f"ws://127.0.0.1:{port_of(server)}/"
            async with connect(url, origin="http://127.0.0.1:8888", close_timeout=seconds(2)):
                pass
            with pytest.raises(InvalidStatus) as caught:
                async with connect(url, origin="http://evil.example"):
                    pass
            return caught.value.response

    response = run(main())
    assert response.status_code == 403
    assert b"Origin" in response.body and b"10.2" in response.body


BAD_REQUESTS = [
    # (request, status, header)
    (good_request(request_line="POST / HTTP/1.1"), 400, None),
    (good_request(request_line="GET / HTTP/1.0"), 400, None),
    (good_request(Host=None), 400, "Host"),
    (good_request(Upgrade=None, Connection="keep-alive"), 400, "Upgrade"),
    (good_request(Upgrade="h2c"), 400, "Upgrade"),
    (good_request(Connection="keep-alive"), 400, "Connection"),
    (good_request(Sec_WebSocket_Key=None), 400, "Sec-WebSocket-Key"),
    (good_request(Sec_WebSocket_Key="not base64!"), 400, "Sec-WebSocket-Key"),
    (good_request(Sec_WebSocket_Key=base64.b64encode(b"15 bytes only!!").decode()), 400, "Sec-WebSocket-Key"),
    (good_request(Sec_WebSocket_Version=None), 400, "Sec-WebSocket-Version"),
    (good_request(Sec_WebSocket_Version="8"), 426, "Sec-WebSocket-Version"),
    (good_request(Origin="http://evil.example"), 403, "Origin"),
    # RFC 9112 3.2: one Host, with a valid value; RFC 9110 5.5: no control characters;
    # RFC 9110 9.3.1: a GET carries no body
    (good_request().replace(b"Host: 127.0.0.1\r\n", b"Host: 127.0.0.1\r\nHost: evil.example\r\n"), 400, "Host"),
    (good_request().replace(b"Host: 127.0.0.1\r\n", b"Host: 127.0.0.1\r\nHost: 127.0.0.1\r\n"), 400, "Host"),
    (good_request(Host=""), 400, "Host"),
    (good_request(X_Note="a\x00b"), 400, "X-Note"),
    (good_request(X_Note="a\x01b"), 400, "X-Note"),
    (good_request(X_Note="a\nb"), 400, "X-Note"),
    (good_request(X_Note="a\x7fb"), 400, "X-Note"),
    (good_request(Content_Length="5"), 400, "Content-Length"),
    (good_request(Transfer_Encoding="chunked"), 400, "Transfer-Encoding"),
]

SECTIONS = ("4.1", "4.2.1", "4.4", "10.2", "RFC 9112 section 3.2", "RFC 9110 section 5.5", "RFC 9110 section 9.3.1")


@pytest.mark.parametrize("request_, status, header", BAD_REQUESTS, ids=[f"{s}-{h}-{i}" for i, (_, s, h) in enumerate(BAD_REQUESTS)])
def test_every_refusal_has_the_right_status_and_names_the_header(request_, status, header):
    """Sections 4.2.1, 4.4 and 10.2: 400, 426 (with Sec-WebSocket-Version: 13), 403."""
    with pytest.raises(wslab.HandshakeError) as caught:
        hs.check_request(hs.parse_request(request_), origins=[None, "http://127.0.0.1:8888"])
    error = caught.value
    assert (error.status, error.header) == (status, header)
    assert error.section in SECTIONS
    assert error.where.startswith("RFC ") and error.where in str(error)

    # The refusal is valid HTTP for an independent parser, over a real socket.
    async def serve_refusal():
        async def handle(reader, writer):
            writer.write(hs.refusal(error))
            await writer.drain()
            writer.close()

        return await asyncio.start_server(handle, "127.0.0.1", 0)

    async def fetch():
        server = await serve_refusal()
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
            data = await reader.read()
            writer.close()
            return data

    raw = run(fetch())
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.receive_data(raw)
    response = conn.next_event()
    body = conn.next_event()
    assert response.status_code == status
    headers = {k.decode().lower(): v.decode() for k, v in response.headers}
    if status == 426:
        assert headers["sec-websocket-version"] == "13"
    assert error.message.encode() in body.data
    if header:
        assert header.encode() in body.data
    assert error.where.encode() in body.data


def test_websockets_refuses_the_same_requests_our_server_refuses():
    """An independent server agrees that each bad request is bad (and the good one is good)."""

    async def main():
        srv = await wslab.serve(wslab.handlers.echo, name="hs-judge", origins=[None, "http://127.0.0.1:8888"])
        try:
            verdicts = []
            # websockets does not check Host (RFC 9112 3.2 does: 400); leave those out
            cases = [case for case in BAD_REQUESTS if case[2] != "Host"]
            for request, _, _ in cases + [(good_request(), 101, None)]:
                data = await handshake_with(srv.host, srv.port, request)
                verdicts.append(int(data.split(b" ", 2)[1]) if data else None)
            return verdicts
        finally:
            await srv.aclose()

    verdicts = run(main())
    assert verdicts[-1] == 101
    assert all(v is None or v >= 400 for v in verdicts[:-1]), verdicts


def test_a_wrong_version_gets_426_with_the_version_the_server_speaks():
    """Section 4.4: the 426 names the versions the server supports."""

    async def main():
        server = await tiny_server()
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
            writer.write(good_request(Sec_WebSocket_Version="8"))
            await writer.drain()
            data = await reader.read()
            writer.close()
            return data

    raw = run(main())
    assert raw.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"\r\nSec-WebSocket-Version: 13\r\n" in raw


# Parsing raw bytes


def test_parse_request_says_more_bytes_are_needed_until_the_head_is_complete():
    data = good_request()
    for cut in range(len(data)):
        assert hs.parse_request(data[:cut]) is None
    request = hs.parse_request(data + b"\x81\x80")
    assert request.method == "GET" and request.path == "/" and request.rest == b"\x81\x80"
    assert hs.check_request(request) == RFC_ACCEPT


def test_headers_are_case_insensitive_and_tokens_are_comma_lists():
    request = hs.parse_request(
        good_request(Upgrade="WebSocket", Connection="keep-alive, UPGRADE").replace(b"Upgrade:", b"upgrade:")
    )
    assert request.headers["UPGRADE"] == "WebSocket"
    assert request.headers.tokens("connection") == ["keep-alive", "upgrade"]
    assert hs.check_request(request) == RFC_ACCEPT


def test_a_head_without_an_end_is_refused_with_431_once_it_is_too_large():
    with pytest.raises(hs.HeadersTooLarge) as caught:
        hs.parse_request(b"GET / HTTP/1.1\r\n" + b"X-Padding: aaaaaaaa\r\n" * 1000, max_size=4096)
    assert caught.value.status == 431
    assert b"431" in hs.refusal(caught.value).split(b"\r\n")[0]


def test_lines_ending_in_bare_newlines_are_refused_with_a_hint():
    with pytest.raises(hs.BadRequest, match=r"\\r\\n"):
        hs.parse_request(good_request().replace(b"\r\n", b"\n"))


def test_malformed_request_line_is_refused():
    with pytest.raises(hs.BadRequest, match="request line"):
        hs.parse_request(b"HELLO\r\n\r\n")


def test_a_server_may_only_pick_a_subprotocol_the_client_offered():
    request = hs.parse_request(good_request(Sec_WebSocket_Protocol="chat, json"))
    assert request.subprotocols == ["chat", "json"]
    assert b"Sec-WebSocket-Protocol: json\r\n" in hs.response_101(request, "json")
    with pytest.raises(ValueError, match="not offered"):
        hs.response_101(request, "xml")


def test_websockets_client_reports_our_refusal_status():
    async def main():
        server = await tiny_server(origins=["http://ok.example"])
        async with server:
            with pytest.raises(InvalidHandshake) as caught:
                async with connect(f"ws://127.0.0.1:{port_of(server)}/"):
                    pass
            return caught.value

    error = run(main())
    assert isinstance(error, InvalidStatus) and error.response.status_code == 403


LINES = [
    "GET / HTTP/1.1", "POST /x HTTP/1.0", "Host: a", "Upgrade: websocket", "Upgrade: WebSocket, h2c",
    "Connection: Upgrade", "Connection: keep-alive, upgrade", f"Sec-WebSocket-Key: {RFC_KEY}",
    "Sec-WebSocket-Key: ümlaut==", "Sec-WebSocket-Key: ====", "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Version: 13, 8", "Origin: http://evil.example", " folded", "no colon", ": empty name",
]


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=400),
    st.lists(st.sampled_from(LINES), max_size=10).map(lambda ls: ("\r\n".join(ls) + "\r\n\r\n").encode()),
))
def test_any_bytes_give_a_request_none_or_a_handshake_error(data):
    """Whatever a client sends, the server side answers with a status, never a crash."""
    try:
        request = hs.parse_request(data)
        if request is not None:
            hs.check_request(request, origins=[None])
    except wslab.HandshakeError as error:
        assert error.status in (400, 403, 426, 431)
        assert hs.refusal(error).startswith(f"HTTP/1.1 {error.status} ".encode())


# HTTP's own rules (RFC 9110, RFC 9112), checked against websockets' server


def test_websockets_accepts_a_repeated_or_empty_host_where_rfc_9112_wants_400():
    """RFC 9112 3.2 "MUST respond with a 400": websockets 17 does not check Host; wslab does."""

    async def main():
        srv = await wslab.serve(wslab.handlers.echo, name="hs-host")
        try:
            answers = []
            for request, _, header in BAD_REQUESTS:
                if header == "Host":
                    answers.append((await handshake_with(srv.host, srv.port, request)).split(b"\r\n")[0])
            return answers
        finally:
            await srv.aclose()

    answers = run(main())
    assert len(answers) == 4 and all(a == b"HTTP/1.1 101 Switching Protocols" for a in answers), answers


def test_content_length_zero_is_no_body_and_is_accepted_like_websockets_does():
    """RFC 9110 9.3.1: only a body is the smuggling risk; `Content-Length: 0` announces none."""
    request = good_request(Content_Length="0")
    assert hs.check_request(hs.parse_request(request)) == RFC_ACCEPT

    async def main():
        srv = await wslab.serve(wslab.handlers.echo, name="hs-cl0")
        try:
            return await handshake_with(srv.host, srv.port, request)
        finally:
            await srv.aclose()

    assert run(main()).startswith(b"HTTP/1.1 101 ")


def test_a_tab_and_latin_1_text_in_a_header_value_are_allowed():
    """RFC 9110 5.5: field-vchar, SP, HTAB and obs-text are valid in a value."""
    request = hs.parse_request(good_request().replace(b"\r\n\r\n", b"\r\nX-Note: a\tb \xe9\r\n\r\n"))
    assert request.headers["X-Note"] == "a\tb \u00e9"
    assert hs.check_request(request) == RFC_ACCEPT


def test_a_header_name_that_is_not_a_token_is_refused():
    """RFC 9110 5.1: field-name = token."""
    with pytest.raises(hs.BadRequest, match="not a token") as caught:
        hs.parse_request(good_request().replace(b"\r\n\r\n", b"\r\nX(A): b\r\n\r\n"))
    assert caught.value.section == "RFC 9110 section 5.1"


def test_the_reference_server_refuses_each_new_case_with_400_naming_header_and_section():
    """Raw sockets to wslab.serve_scratch: the refusal's body names the header and the RFC section."""

    async def main():
        srv = await wslab.serve_scratch(name="hs-scratch")
        try:
            answers = []
            for request, status, header in BAD_REQUESTS[-9:]:
                reader, writer = await asyncio.open_connection(srv.host, srv.port)
                writer.write(request)
                await writer.drain()
                answers.append((status, header, await asyncio.wait_for(reader.read(), seconds(5))))
                writer.close()
            return answers
        finally:
            await srv.aclose()

    for status, header, answer in run(main()):
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer
        body = answer.split(b"\r\n\r\n", 1)[1]
        assert header.encode() in body and b"RFC " in body and b"section" in body, body


# Documented exceptions only (issue 14 item 5)


@pytest.mark.parametrize("code", ["1\xb21", "\u0661\u0660\u0661", "1" * 4301, "99", "1010", "+10", " 10"])
def test_a_status_code_that_is_not_three_ascii_digits_is_an_invalid_response(code):
    """RFC 9112 4: status-code = 3DIGIT; '²' passes str.isdigit() but not int()."""
    data = f"HTTP/1.1 {code} Switching Protocols\r\n\r\n".encode("utf-8")
    with pytest.raises(hs.InvalidResponse, match="status"):
        hs.parse_response(data)
    request = hs.build_request("ws://127.0.0.1:1/", key=RFC_KEY)
    with pytest.raises(hs.InvalidResponse):
        hs.check_response(data, request)


def test_checking_against_a_request_without_a_key_is_a_clear_handshake_error():
    request = good_request(Sec_WebSocket_Key=None)
    with pytest.raises(hs.BadRequest, match="no Sec-WebSocket-Key") as caught:
        hs.check_response(REAL_101, request)
    assert caught.value.header == "Sec-WebSocket-Key"
    with pytest.raises(hs.BadRequest, match="incomplete"):
        hs.check_response(REAL_101, request[:-2])


def test_a_non_ascii_key_is_a_clear_error_not_a_unicode_error():
    request = good_request(Sec_WebSocket_Key="\u00fcmlaut==").decode().encode("latin-1")
    with pytest.raises(hs.BadRequest, match="not ASCII"):
        hs.check_response(REAL_101, request)
    with pytest.raises(hs.BadRequest, match="Sec-WebSocket-Key"):
        hs.check_request(hs.parse_request(request))
    with pytest.raises(ValueError, match="not ASCII") as caught:
        wslab.accept_key("\u00fcmlaut==")
    assert not isinstance(caught.value, UnicodeError)


@pytest.mark.parametrize("kwargs", [
    {"origin": "http://a.example\r\nX-Evil: 1"},
    {"headers": [("X-A", "b\nc")]},
    {"headers": [("X A", "b")]},
    {"subprotocols": ["chat\r\n"]},
    {"headers": [("X-A", "\u2713")]},
])
def test_build_request_refuses_a_header_that_would_split_the_head(kwargs):
    """RFC 9110 5.5: a CR or LF in a value would start a header of the attacker's choosing."""
    with pytest.raises(ValueError, match="cannot send"):
        hs.build_request("ws://127.0.0.1:1/", **kwargs)


# Lesson 02's claims, pinned to the versions they describe (issue 12)


def refusals_from_websockets() -> dict[str, bytes]:
    async def main():
        srv = await wslab.serve(wslab.handlers.echo, name="hs-lesson-02")
        try:
            good = hs.build_request(srv.url, key=RFC_KEY)
            requests = {
                "version 8": good.replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"),
                "key hello": good.replace(RFC_KEY.encode(), b"hello"),
                "plain GET": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n",
            }
            return {name: await handshake_with(srv.host, srv.port, raw) for name, raw in requests.items()}
        finally:
            await srv.aclose()

    return run(main())


def test_websockets_17_refuses_another_version_with_400_and_without_the_version_header():
    """RFC 6455 4.4: "it MUST respond with a |Sec-WebSocket-Version| header field"; websockets does not."""
    import websockets

    response = hs.parse_response(refusals_from_websockets()["version 8"])
    assert websockets.__version__.startswith("17."), "lesson 02 shows websockets 17: re-check its refusal"
    assert response.status == 400
    assert "Sec-WebSocket-Version" not in response.headers  # the MUST it breaks (lesson 02, section 5)


def test_websockets_answers_a_plain_get_with_426_and_upgrade_websocket():
    response = hs.parse_response(refusals_from_websockets()["plain GET"])
    assert (response.status, response.headers["Upgrade"]) == (426, "websocket")


def test_the_key_hello_is_not_base64_and_both_servers_say_so():
    """Lesson 02: 'hello' is not base64 at all (5 characters), not "16 bytes short"."""
    import binascii

    with pytest.raises(binascii.Error):
        base64.b64decode("hello", validate=True)
    answer = refusals_from_websockets()["key hello"]
    assert answer.startswith(b"HTTP/1.1 400 ") and b"Invalid base64" in answer
    with pytest.raises(hs.BadRequest, match="'hello' is not base64"):
        hs.check_request(hs.parse_request(good_request(Sec_WebSocket_Key="hello")))
    with pytest.raises(hs.BadRequest, match="decodes to 10 bytes, not 16"):
        hs.check_request(hs.parse_request(good_request(Sec_WebSocket_Key="c2VjcmV0LWtleQ==")))


def test_our_version_refusal_is_426_with_the_versions_we_speak():
    """RFC 6455 4.2.2 ("such as 426 Upgrade Required") and 4.4 (the header is a MUST)."""
    with pytest.raises(hs.UpgradeRequired) as caught:
        hs.check_request(hs.parse_request(good_request(Sec_WebSocket_Version="8")))
    response = hs.parse_response(hs.refusal(caught.value))
    assert response.status == 426 and response.headers["Sec-WebSocket-Version"] == "13"


FETCH_JS = """
async (url) => {
  const answer = await fetch(url, {method: "POST", headers: {"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13", "X-Ordinary": "yes"}, body: "x"});
  return await answer.text();
}
"""


@pytest.mark.browser
def test_a_page_cannot_send_sec_headers_with_fetch(chromium):
    """RFC 6455 1.6: "fields starting with |Sec-| cannot be set by an attacker from a web browser"."""

    def echo_headers(head: bytes) -> bytes:
        body = head.split(b"\r\n\r\n")[0]
        return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nAccess-Control-Allow-Origin: *\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)

    from wslab.server.background import LoopThread

    thread = LoopThread("echo-headers")  # the sync Playwright API blocks this thread
    try:
        server = thread.run(serve_one_answer(echo_headers))
        url = f"http://127.0.0.1:{port_of(server)}/"
        page = chromium.new_page()
        try:
            page.goto(url)  # same origin: no CORS preflight in the way
            seen = page.evaluate(FETCH_JS, url)
        finally:
            page.close()
        thread.run(_close(server))
    finally:
        thread.stop()
    assert "x-ordinary: yes" in seen.lower()
    assert "sec-websocket-key" not in seen.lower() and "sec-websocket-version" not in seen.lower(), seen


async def _close(server) -> None:
    server.close()
    await server.wait_closed()
