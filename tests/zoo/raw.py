"""A raw asyncio echo server, correct by default, with switchable quirks.

Variants are legal under RFC 6455 and must pass every MUST; mutants each
break exactly one rule. The zoo (``tests/test_battery_zoo.py``) runs each in
a process of its own: ``python -m tests.zoo.servers raw:QUIRK``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import struct

__all__ = ["RawServer", "VARIANTS", "MUTANTS"]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: Legal but unusual behaviours (each must pass every MUST case).
VARIANTS = {
    "close-1000": "answers every close with code 1000 instead of echoing the code",
    "accepts-version-8": "accepts Sec-WebSocket-Version 8 as well as 13 (4.2.2: any version it understands)",
    "pings-first": "sends a ping and an unsolicited pong right after the handshake (5.5.2 MAY, 5.5.3 MAY)",
    "pings-often": "sends a ping and an unsolicited pong before every frame it sends (5.5.2, 5.5.3 MAY)",
    "echoes-in-fragments": "sends every echo as several fragments (5.4 MAY)",
    "drops-tcp-on-error": "fails the connection by closing TCP, with no close frame (7.1.7 SHOULD, 5.1 MAY)",
    "426-for-missing-key": "refuses a missing Sec-WebSocket-Key with 426 (4.2.1 'such as 400')",
    "text-only": "takes text only: refuses a binary message with close 1003 (7.4.1 allows exactly that)",
}

#: One broken rule each: quirk -> what it breaks.
MUTANTS = {
    "bad-accept": "a wrong Sec-WebSocket-Accept (4.2.2)",
    "no-upgrade-header": "no Upgrade header in the 101 (4.2.2)",
    "no-connection-header": "no Connection header in the 101 (4.2.2)",
    "accepts-missing-key": "101 for a request with no Sec-WebSocket-Key (4.2.1)",
    "accepts-any-version": "101 for any Sec-WebSocket-Version (4.2.2, 4.4)",
    "no-version-header": "refuses an unknown version without Sec-WebSocket-Version (4.4)",
    "keeps-the-mask": "does not unmask binary frames: the echo is the masked bytes (6.2)",
    "text-as-binary": "echoes text messages as binary ones (6.2: note the type from the opcode)",
    "one-frame-per-read": "drops what a read brought after the first data frame (6.2: parse all incoming data)",
    "no-reassembly": "echoes each fragment as a message of its own (5.4)",
    "accepts-unmasked": "echoes unmasked client frames (5.1)",
    "ignores-reserved-opcode": "skips frames with a reserved opcode (5.2)",
    "ignores-rsv": "ignores reserved bits (5.2)",
    "accepts-orphan-continuation": "treats a continuation with no message as a message (5.4)",
    "accepts-interleaved": "lets a new message start inside a fragmented one (5.4)",
    "masks-frames": "masks the frames it sends (5.1)",
    "long-lengths": "encodes every length in the 64-bit form (5.2)",
    "sets-rsv": "sets RSV1 on the frames it sends (5.2)",
    "ignores-pings": "never answers a ping (5.5.2)",
    "accepts-long-ping": "answers a 126-byte ping (5.5)",
    "accepts-fragmented-ping": "answers a ping without FIN (5.5)",
    "pong-without-fin": "sends pongs without the FIN bit (5.5)",
    "no-close-answer": "closes TCP on a close frame without answering it (5.5.1)",
    "keeps-tcp-open": "keeps TCP open after the closing handshake until the client leaves (5.5.1)",
    "echoes-close-payload": "echoes the client's close body as is, 1005 and 1-byte bodies too (5.5.1, 7.4)",
    "per-frame-utf8": "checks UTF-8 frame by frame, refusing a code point split across frames (5.6)",
    "no-utf8-check": "echoes invalid UTF-8 (8.1)",
    "no-size-limit": "echoes messages of any size (10.4)",
    # Rules the battery did not check before issue 20 (each was a false pass).
    "masks-close": "masks its close frames, and only those (5.1)",
    "long-close-length": "encodes its close frames' length in the 16-bit form (5.2)",
    "long-close-reason": "answers a close with a 202-byte close payload (5.5)",
    "answers-close-1005": "answers every valid close with code 1005 (7.4.1)",
    "data-after-close": "sends a text message after its own close frame (5.5.1)",
    "picks-subprotocol": "answers Sec-WebSocket-Protocol: chat, never offered (4.2.2)",
    "picks-extension": "answers Sec-WebSocket-Extensions: permessage-deflate, never offered (4.2.2)",
    "accepts-missing-version": "101 for a request with no Sec-WebSocket-Version (4.2.1)",
    "accepts-post": "101 for a POST request (4.2.1)",
    "ignores-length-top-bit": "drops the top bit of a 64-bit length instead of failing (5.2)",
    "utf8-unfragmented-only": "checks UTF-8 only in messages of one frame (8.1)",
    "utf8-surrogatepass": "accepts UTF-8-encoded surrogates (8.1)",
    "utf8-allows-overlong": "accepts overlong 2-byte UTF-8 (8.1)",
    "latin1-text": "encodes its text in Latin-1 when every character fits, 'café' as 63 61 66 e9 (5.6)",
}


class Fail(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class RawServer:
    """Serve one quirk (or none) on 127.0.0.1, port 0."""

    def __init__(self, quirk: str = "", max_size: int = 2**20) -> None:
        if quirk and quirk not in VARIANTS and quirk not in MUTANTS:
            raise ValueError(f"unknown quirk {quirk!r}; known: {sorted(VARIANTS) + sorted(MUTANTS)}")
        self.quirk = quirk
        self.max_size = max_size
        self.server: asyncio.base_events.Server | None = None

    def has(self, quirk: str) -> bool:
        return self.quirk == quirk

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.connection, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if await self.handshake(reader, writer):
                await self.frames(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    # Handshake

    async def handshake(self, reader, writer) -> bool:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        headers: dict[str, str] = {}
        for line in head.split("\r\n")[1:]:
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        key = headers.get("sec-websocket-key")
        if not head.startswith("GET ") and not self.has("accepts-post"):
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return False
        if key is None and not self.has("accepts-missing-key"):
            status = b"426 Upgrade Required" if self.has("426-for-missing-key") else b"400 Bad Request"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return False
        versions = {"13", "8"} if self.has("accepts-version-8") else {"13"}
        version = headers.get("sec-websocket-version")
        if version is None and not self.has("accepts-missing-version"):
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return False
        if version is not None and version not in versions and not self.has("accepts-any-version"):
            listed = b"" if self.has("no-version-header") else b"Sec-WebSocket-Version: " + ", ".join(sorted(versions, key=int, reverse=True)).encode() + b"\r\n"
            writer.write(b"HTTP/1.1 426 Upgrade Required\r\n" + listed + b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            return False
        accept = base64.b64encode(hashlib.sha1(((key or "") + GUID).encode()).digest()).decode()
        if self.has("bad-accept"):
            accept = base64.b64encode(hashlib.sha1((key or "").encode()).digest()).decode()
        lines = ["HTTP/1.1 101 Switching Protocols"]
        if not self.has("no-upgrade-header"):
            lines.append("Upgrade: websocket")
        if not self.has("no-connection-header"):
            lines.append("Connection: Upgrade")
        lines.append(f"Sec-WebSocket-Accept: {accept}")
        if self.has("picks-subprotocol"):
            lines.append("Sec-WebSocket-Protocol: chat")
        if self.has("picks-extension"):
            lines.append("Sec-WebSocket-Extensions: permessage-deflate")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        if self.has("pings-first"):
            self.send(writer, 0x9, b"server ping")
            self.send(writer, 0xA, b"unsolicited")
        return True

    # Frames

    def send(self, writer, opcode: int, payload: bytes, fin: bool = True) -> None:
        if self.has("pings-often") and opcode not in (0x9, 0xA):
            self.send(writer, 0x9, b"often")
            self.send(writer, 0xA, b"unsolicited")
        rsv = 0b100 if self.has("sets-rsv") else 0
        if opcode == 0xA and self.has("pong-without-fin"):
            fin = False
        head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
        masked = self.has("masks-frames") or (opcode == 0x8 and self.has("masks-close"))
        flag = 0x80 if masked else 0
        n = len(payload)
        if opcode == 0x8 and self.has("long-close-length"):
            head += struct.pack("!BH", flag | 126, n)
        elif self.has("long-lengths"):
            head += struct.pack("!BQ", flag | 127, n)
        elif n < 126:
            head += struct.pack("!B", flag | n)
        elif n < 2**16:
            head += struct.pack("!BH", flag | 126, n)
        else:
            head += struct.pack("!BQ", flag | 127, n)
        if masked:
            key = b"\x01\x02\x03\x04"
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            head += key
        writer.write(head + payload)

    def send_message(self, writer, opcode: int, payload: bytes) -> None:
        if opcode == 0x1 and self.has("latin1-text"):
            try:
                payload = payload.decode().encode("latin-1")
            except UnicodeEncodeError:
                pass  # not every character fits: UTF-8, as it should
        if self.has("echoes-in-fragments") and len(payload) > 1:
            cut = [0, len(payload) // 3, 2 * len(payload) // 3, len(payload)]
            for i in range(3):
                self.send(writer, opcode if i == 0 else 0x0, payload[cut[i]:cut[i + 1]], fin=i == 2)
        else:
            self.send(writer, opcode, payload)

    async def frames(self, reader, writer) -> None:
        kind, parts = None, []
        nframes = 0
        try:
            while True:
                b0, b1 = await reader.readexactly(2)
                fin, rsv, opcode, n = bool(b0 & 0x80), b0 & 0x70, b0 & 0x0F, b1 & 0x7F
                if not b1 & 0x80 and not self.has("accepts-unmasked"):
                    raise Fail(1002)
                if rsv and not self.has("ignores-rsv"):
                    raise Fail(1002)
                if n == 126:
                    (n,) = struct.unpack("!H", await reader.readexactly(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", await reader.readexactly(8))
                    if self.has("ignores-length-top-bit"):
                        n &= 2**63 - 1
                known = opcode in (0x0, 0x1, 0x2, 0x8, 0x9, 0xA)
                if not known and not self.has("ignores-reserved-opcode"):
                    raise Fail(1002)
                if opcode >= 0x8 and known:
                    if n > 125 and not (opcode == 0x9 and self.has("accepts-long-ping")):
                        raise Fail(1002)
                    if not fin and not (opcode == 0x9 and self.has("accepts-fragmented-ping")):
                        raise Fail(1002)
                if opcode < 0x8 and sum(map(len, parts)) + n > self.max_size and not self.has("no-size-limit"):
                    raise Fail(1009)
                key = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
                data = await reader.readexactly(n)
                payload = bytes(b ^ key[i % 4] for i, b in enumerate(data)) if n < 4096 else _unmask(data, key)
                if self.has("keeps-the-mask") and (opcode == 0x2 or opcode == 0x0 and kind == 0x2):
                    payload = data
                if self.has("one-frame-per-read") and opcode in (0x0, 0x1, 0x2):
                    reader._buffer.clear()  # whatever came in the same read is lost
                if not known:
                    continue
                if opcode == 0x9:
                    if not self.has("ignores-pings"):
                        self.send(writer, 0xA, payload)
                    continue
                if opcode == 0xA:
                    continue
                if opcode == 0x8:
                    await self.closing(reader, writer, payload)
                    return
                if opcode == 0x0 and kind is None:
                    if not self.has("accepts-orphan-continuation"):
                        raise Fail(1002)
                    kind = 0x1  # taken as the start of a text message
                elif opcode != 0x0 and kind is not None:
                    if not self.has("accepts-interleaved"):
                        raise Fail(1002)
                    parts = []  # the old message is dropped
                if opcode != 0x0:
                    kind, nframes = opcode, 0
                    if opcode == 0x2 and self.has("text-only"):
                        raise Fail(1003)
                nframes += 1
                parts.append(payload)
                if kind == 0x1 and self.has("per-frame-utf8"):
                    try:
                        payload.decode("utf-8")
                    except UnicodeDecodeError:
                        raise Fail(1007) from None
                if self.has("no-reassembly") and not fin:
                    self.send(writer, kind, payload)
                    parts = []
                    continue
                if not fin:
                    continue
                message, kind_done = b"".join(parts), kind
                kind, parts = None, []
                if kind_done == 0x1 and not self.has("no-utf8-check") and not self.lenient_utf8(message, nframes):
                    raise Fail(1007)
                if kind_done == 0x1 and self.has("text-as-binary"):
                    kind_done = 0x2
                self.send_message(writer, kind_done, message)
                await writer.drain()
        except Fail as failure:
            if not self.has("drops-tcp-on-error"):
                self.send(writer, 0x8, struct.pack("!H", failure.code))
            await writer.drain()  # then TCP closes at once, read or not (a reset, if bytes are left unread)

    def lenient_utf8(self, message: bytes, nframes: int) -> bool:
        """Is ``message`` valid UTF-8, as this server checks it (strictly, unless a UTF-8 mutant)?"""
        errors = "strict"
        if self.has("utf8-unfragmented-only") and nframes > 1:
            return True
        if self.has("utf8-surrogatepass"):
            errors = "surrogatepass"
        if self.has("utf8-allows-overlong"):
            message = re.sub(rb"[\xc0\xc1][\x80-\xbf]", b"?", message)
        try:
            message.decode("utf-8", errors)
        except UnicodeDecodeError:
            return False
        return True

    async def closing(self, reader, writer, payload: bytes) -> None:
        if self.has("no-close-answer"):
            return
        if self.has("echoes-close-payload"):
            body = payload
        elif len(payload) == 1:
            body = struct.pack("!H", 1002)
        elif len(payload) >= 2:
            (code,) = struct.unpack("!H", payload[:2])
            invalid = code < 1000 or code in (1004, 1005, 1006, 1015) or 1016 <= code < 3000 or code >= 5000
            try:
                payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                invalid = True  # a reason is UTF-8 (5.5.1); Autobahn expects the connection failed
            if invalid:
                body = struct.pack("!H", 1002)
            else:
                body = struct.pack("!H", 1005 if self.has("answers-close-1005") else 1000 if self.has("close-1000") else code)
        else:
            body = b""
        if self.has("long-close-reason"):
            body = body[:2] + b"r" * 200
        self.send(writer, 0x8, body)
        if self.has("data-after-close"):
            self.send(writer, 0x1, b"bye")
        await writer.drain()
        if self.has("keeps-tcp-open"):
            await reader.read()  # until the client gives up


def _unmask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
