"""The battery passes a correct server and catches the bugs it claims to catch.

The correct server is the websockets library's (an independent
implementation). The buggy ones are a small raw-asyncio echo server written
here with one bug switched on at a time: each must fail exactly the cases
that name its bug, and pass the rest.
"""

from __future__ import annotations

import asyncio
import struct

import pytest
from websockets.frames import Frame, Opcode

import wslab
from wslab import battery
from wslab.battery import CASES, check_server, check_server_sync, encode_frame

from .conftest import run, seconds

ALL = {case.name for case in CASES}


async def pure_echo(connection):
    async for message in connection:
        await connection.send(message)


# Encoding: RFC 6455 section 5.7 vectors, read back by websockets


def test_encode_frame_matches_the_rfc_examples():
    """RFC 6455 5.7: masked "Hello", unmasked "Hello", and the 16/64-bit headers."""
    key = bytes.fromhex("37fa213d")
    assert encode_frame(0x1, b"Hello", mask_key=key).hex() == "818537fa213d7f9f4d5158"
    assert encode_frame(0x1, b"Hello", mask=False).hex() == "810548656c6c6f"
    assert encode_frame(0x2, bytes(256), mask=False)[:4].hex() == "827e0100"
    assert encode_frame(0x2, bytes(65536), mask=False)[:10].hex() == "827f0000000000010000"
    assert encode_frame(0x1, b"Hel", fin=False, mask=False).hex() == "010348656c"


@pytest.mark.parametrize("size", [0, 125, 126, 200, 65535, 65536, 70_000])
def test_websockets_parses_encoded_frames_at_every_length_form(size):
    payload = bytes(i % 251 for i in range(size))
    data = encode_frame(0x2, payload)

    def read_exact(n):
        chunk = data[read_exact.at : read_exact.at + n]
        read_exact.at += n
        return chunk
        yield  # a generator, as Frame.parse expects

    read_exact.at = 0
    parser = Frame.parse(read_exact, mask=True)
    try:
        next(parser)
    except StopIteration as done:
        frame = done.value
    assert frame.opcode is Opcode.BINARY and frame.data == payload and frame.fin


# A correct, independent server passes everything


def test_a_websockets_echo_server_passes_every_case():
    async def main():
        srv = await wslab.serve(pure_echo, name="reference", max_size=2**20)
        try:
            return await check_server(srv, max_size=2**20, timeout=seconds(5))
        finally:
            await srv.aclose()

    report = run(main(), timeout=60)
    assert report.failed == [], str(report)
    assert len(report) == len(CASES)
    assert "16 of 16 cases passed" in str(report) and "<table>" in report._repr_html_()


def test_websockets_400_for_a_wrong_version_passes_with_a_note():
    """RFC 6455 4.4: "such as 426"; websockets answers 400, a refusal all the same."""

    async def main():
        srv = await wslab.serve(pure_echo, name="reference")
        try:
            return await check_server(srv, cases=["handshake with version 8"], timeout=seconds(5))
        finally:
            await srv.aclose()

    result = run(main())["handshake with version 8"]
    assert result.passed and "400" in result.happened and "426" in result.happened


def test_a_smaller_limit_than_the_server_has_fails_the_oversized_case():
    async def main():
        srv = await wslab.serve(pure_echo, name="reference", max_size=2**20)
        try:
            return await check_server(srv, max_size=1000, cases=["oversized message"], timeout=seconds(5))
        finally:
            await srv.aclose()

    result = run(main())["oversized message"]
    assert not result.passed and "1009" in result.expected


# Buggy servers fail exactly their cases


class Sloppy:
    """A raw asyncio echo server with switchable bugs (all off: a correct server)."""

    def __init__(self, **bugs: bool) -> None:
        self.bugs = bugs
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.connection, "127.0.0.1", 0)
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/"

    async def stop(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        async with asyncio.timeout(seconds(5)):
            await self.server.wait_closed()

    async def connection(self, reader, writer):
        from websockets.utils import accept_key

        self.writers.add(writer)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            headers = dict(
                (k.strip().lower(), v.strip())
                for k, v in (ln.split(":", 1) for ln in head.split("\r\n")[1:] if ":" in ln)
            )
            if "sec-websocket-key" not in headers:
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                return
            if headers.get("sec-websocket-version") != "13":
                writer.write(b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n"
                             b"Content-Length: 0\r\n\r\n")
                return
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + f"Sec-WebSocket-Accept: {accept_key(headers['sec-websocket-key'])}\r\n\r\n".encode()
            )
            await self.frames(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def send(self, writer, opcode, payload):
        writer.write(encode_frame(opcode, payload, mask=False))

    def close(self, writer, code):
        self.send(writer, 0x8, struct.pack("!H", code))

    async def frames(self, reader, writer):
        message, kind = b"", None
        while True:
            b0, b1 = await reader.readexactly(2)
            fin, opcode, n = b0 & 0x80, b0 & 0x0F, b1 & 0x7F
            if not b1 & 0x80 and not self.bugs.get("accept_unmasked"):
                return self.close(writer, 1002)
            if n == 126:
                (n,) = struct.unpack("!H", await reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await reader.readexactly(8))
            if opcode >= 0x8 and n > 125 or opcode not in (0, 1, 2, 8, 9, 10):
                return self.close(writer, 1002)
            if len(message) + n > 2**20 and not self.bugs.get("no_size_limit"):
                return self.close(writer, 1009)
            key = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(await reader.readexactly(n)))
            if opcode == 0x9:
                if not self.bugs.get("ignore_pings"):
                    self.send(writer, 0xA, payload)
                continue
            if opcode == 0x8:
                writer.write(encode_frame(0x8, payload, mask=False))
                if self.bugs.get("keep_tcp_open"):
                    await reader.read()  # waits for the client to hang up
                return
            if opcode == 0xA:
                continue
            kind = kind if opcode == 0 else opcode
            message += payload
            if not fin:
                continue
            if kind == 1 and not self.bugs.get("no_utf8_check"):
                try:
                    message.decode()
                except UnicodeDecodeError:
                    return self.close(writer, 1007)
            self.send(writer, kind, message)
            message, kind = b"", None


def check_sloppy(timeout: float = 1.0, **bugs: bool):
    async def main():
        sloppy = Sloppy(**bugs)
        url = await sloppy.start()
        try:
            return await check_server(url, timeout=seconds(timeout))
        finally:
            await sloppy.stop()

    return run(main(), timeout=60)


def test_the_sloppy_server_with_no_bug_switched_on_passes_every_case():
    report = check_sloppy()
    assert report.failed == [], str(report)


@pytest.mark.parametrize(
    "bug, fails",
    [
        ("accept_unmasked", {"unmasked client frame"}),
        ("no_utf8_check", {"invalid UTF-8 in a text message"}),
        ("ignore_pings", {"ping -> pong", "ping inside a fragmented message"}),
        ("no_size_limit", {"oversized message"}),
        ("keep_tcp_open", {"close with a code"}),
    ],
)
def test_a_server_with_one_bug_fails_exactly_the_cases_for_that_bug(bug, fails):
    """RFC 6455 5.1 (masking), 8.1 (UTF-8), 5.5.2 (pong), 7.4.1 (1009)."""
    report = check_sloppy(**{bug: True})
    assert set(report.failed) == fails, str(report)
    assert ALL - set(report.failed) == {r.name for r in report.results if r.passed}


def test_a_server_that_keeps_tcp_open_after_closing_is_told_so():
    """RFC 6455 7.1.1: after the closing handshake, the server closes TCP first."""
    report = check_sloppy(keep_tcp_open=True)
    assert "kept the TCP connection open" in report["close with a code"].happened


def test_an_accepted_unmasked_frame_is_reported_with_what_came_back():
    report = check_sloppy(accept_unmasked=True)
    happened = report["unmasked client frame"].happened
    assert "no answer within" in happened and "unmasked" in happened


def test_a_server_that_never_answers_fails_each_case_in_bounded_time():
    async def main():
        async def silent(reader, writer):
            await reader.read()  # reads until the client gives up, never answers

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        try:
            return await check_server(
                url, timeout=seconds(0.3),
                cases=["text echo", "handshake without Sec-WebSocket-Key"],
            )
        finally:
            server.close()

    report = run(main(), timeout=20)
    assert report.failed == ["text echo", "handshake without Sec-WebSocket-Key"]
    assert all("no answer within" in r.happened for r in report.results)


def test_nothing_listening_is_a_failed_case_not_an_exception():
    async def main():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        return await check_server(f"ws://127.0.0.1:{port}/", cases=["text echo"], timeout=seconds(2))

    result = run(main())["text echo"]
    assert not result.passed and "could not connect" in result.happened


# Reports, the blocking variant, bad arguments


def test_assert_passed_names_the_failed_cases():
    report = check_sloppy(no_utf8_check=True)
    with pytest.raises(wslab.CheckFailed, match="invalid UTF-8 in a text message.*1007"):
        report.assert_passed()


def test_assert_passed_reraises_a_stub_so_the_exercise_is_not_done():
    report = battery.Report("ws://127.0.0.1:1/", [], server_errors=[NotImplementedError("not done yet")])
    with pytest.raises(NotImplementedError):
        report.assert_passed()


def test_check_server_sync_tests_a_server_in_a_thread():
    srv = wslab.serve_in_thread(pure_echo, name="threaded")
    try:
        report = check_server_sync(srv, cases=["text echo", "ping -> pong"], timeout=seconds(5))
    finally:
        srv.stop()
    assert report.passed and report.failed == []


def test_check_server_sync_refuses_a_server_on_the_calling_loop():
    async def main():
        srv = await wslab.serve(pure_echo, name="same-loop")
        try:
            with pytest.raises(RuntimeError, match="await wslab.check_server"):
                check_server_sync(srv)
        finally:
            await srv.aclose()

    run(main())


@pytest.mark.parametrize("url", ["wss://127.0.0.1:1/", "http://127.0.0.1:1/", "ws:///path"])
def test_a_url_the_battery_cannot_use_is_refused_with_the_fix(url):
    with pytest.raises(ValueError, match="ws://"):
        run(check_server(url))


def test_an_unknown_case_name_lists_the_cases():
    with pytest.raises(ValueError, match="text echo"):
        run(check_server("ws://127.0.0.1:1/", cases=["txt echo"]))


def test_the_command_line_prints_the_report_and_sets_the_exit_status(capsys):
    srv = wslab.serve_in_thread(pure_echo, name="cli")
    try:
        status = battery.main([srv.url, "--timeout", str(seconds(5))])
    finally:
        srv.stop()
    assert status == 0
    assert "16 of 16 cases passed" in capsys.readouterr().out


# The checks for the pieces of a server (lesson 06's exercises)


def respond(request: bytes, *, accept=None, version_header=True) -> bytes:
    """A handshake answer written for the test, with optional bugs."""
    from websockets.utils import accept_key

    lines = request.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:]) if _}
    if "sec-websocket-key" not in headers:
        return b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
    if headers.get("sec-websocket-version") != "13":
        extra = b"Sec-WebSocket-Version: 13\r\n" if version_header else b""
        return b"HTTP/1.1 426 Upgrade Required\r\n" + extra + b"Content-Length: 0\r\n\r\n"
    key = accept or accept_key(headers["sec-websocket-key"])
    return (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {key}\r\n\r\n").encode()


def test_check_handshake_response_passes_a_correct_answer():
    battery.check_handshake_response(respond)


@pytest.mark.parametrize(
    "bug, message",
    [
        ({"accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}, "websockets' client refused"),
        ({"version_header": False}, "Sec-WebSocket-Version: 13"),
    ],
)
def test_check_handshake_response_names_what_is_wrong(bug, message):
    with pytest.raises(wslab.CheckFailed, match=message):
        battery.check_handshake_response(lambda request: respond(request, **bug))


def test_check_handshake_response_wants_bytes():
    with pytest.raises(wslab.CheckFailed, match="return bytes"):
        battery.check_handshake_response(lambda request: respond(request).decode())


class ProtocolViolation(Exception):
    def __init__(self, code):
        super().__init__(f"close with {code}")
        self.code = code


def make_read_frame(*, check_mask=True, check_size_first=True, check_control=True):
    async def read_frame(reader, max_size):
        b0, b1 = await reader.readexactly(2)
        fin, opcode, n = bool(b0 & 0x80), b0 & 0x0F, b1 & 0x7F
        if check_mask and not b1 & 0x80:
            raise ProtocolViolation(1002)
        if check_control and opcode not in (0, 1, 2, 8, 9, 10):
            raise ProtocolViolation(1002)
        if n == 126:
            (n,) = struct.unpack("!H", await reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await reader.readexactly(8))
        if check_control and opcode >= 8 and n > 125:
            raise ProtocolViolation(1002)
        if check_size_first and n > max_size:
            raise ProtocolViolation(1009)
        key = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(await reader.readexactly(n)))
        return fin, opcode, payload

    return read_frame


def test_check_read_frame_passes_a_correct_reader():
    run(battery.check_read_frame(make_read_frame(), 2**20))


@pytest.mark.parametrize(
    "bug, message",
    [
        ({"check_mask": False}, "unmasked frame"),
        ({"check_size_first": False}, "check the length against max_size before reading"),
        ({"check_control": False}, "reserved opcode"),
    ],
)
def test_check_read_frame_names_the_rule_a_reader_misses(bug, message):
    with pytest.raises(wslab.CheckFailed, match=message):
        run(battery.check_read_frame(make_read_frame(**bug), 2**20, timeout=seconds(0.5)))


def test_check_read_frame_catches_a_reader_that_ignores_the_mask():
    async def no_unmasking(reader, max_size):
        fin, opcode, payload = await make_read_frame()(reader, max_size)
        return fin, opcode, b"\x7f\x9f\x4d\x51\x58" if payload == b"Hello" else payload

    with pytest.raises(wslab.CheckFailed, match="masked 'Hello'"):
        run(battery.check_read_frame(no_unmasking, 2**20))
