"""A WebSocket echo server from scratch: asyncio streams, ``wslab.handshake``, ``wslab.frames``.

This is the reference for lesson 06, where you write the same server
yourself. Read :func:`connection` top to bottom: it is the whole protocol.

    srv = await wslab.serve_scratch()          # an echo server on 127.0.0.1
    report = await wslab.check_server(srv)     # the battery: every case passes

Design note
-----------
* :func:`connection` serves one client on one ``(reader, writer)`` pair from
  :func:`asyncio.start_server`: it reads the upgrade request, answers 101 or a
  refusal, then feeds every byte it reads to a :class:`wslab.frames.Reader`,
  which unmasks, reassembles fragments, checks UTF-8 and the size limit, and
  raises :class:`~wslab.frames.ProtocolError` with the close code to send.
* :func:`serve_streams` runs *any* ``async def connection(reader, writer)``
  (yours in lesson 06) like wslab's other servers: on the running loop (task
  mode), on ``127.0.0.1`` with a port the OS picks, listed by
  ``wslab.status()``, stopped by ``wslab.stop_all()``. An exception in the
  connection code is printed once, kept in ``srv.errors``, and the client's
  TCP connection is closed.
* What must never happen: a stop that hangs. ``aclose()`` stops listening,
  cancels every connection (the reference server answers a cancel with close
  code 1001, going away) and aborts whatever is left after ``stop_timeout``.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Union

from . import frames, handshake
from .frames import CloseCode, Frame, Message, Opcode, ProtocolError
from .servers import DEFAULT_STOP_TIMEOUT, Background, _check_host, _check_port, register, release

__all__ = ["connection", "echo", "serve_scratch", "serve_streams", "ScratchServer", "DEFAULT_MAX_SIZE"]

#: The largest message the reference server accepts, in bytes (1009 beyond it).
DEFAULT_MAX_SIZE = 2**20

Data = Union[str, bytes]
MessageHandler = Callable[[Data], Union[Data, None, Awaitable[Union[Data, None]]]]
Connection = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def echo(message: Data) -> Data:
    """The default message handler: the reply is the message itself."""
    return message


# -- The server: one client, start to finish ----------------------------------


async def connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    handler: MessageHandler = echo,
    max_size: int | None = DEFAULT_MAX_SIZE,
) -> None:
    """Serve one WebSocket client: handshake, then frames until one side closes.

    ``handler(message)`` gets each text (``str``) or binary (``bytes``)
    message and returns the reply (``None``: no reply); it may be async.
    """
    # 1. The opening handshake (RFC 6455 section 4.2): read until the blank
    #    line that ends the request head, check it, answer 101 or refuse.
    data = b""
    try:
        while (request := handshake.parse_request(data)) is None:
            chunk = await reader.read(4096)
            if not chunk:
                return  # the client left before finishing its request
            data += chunk
        handshake.check_request(request)
    except handshake.HandshakeError as error:
        writer.write(handshake.refusal(error))  # 400, 426, 431 with a body that says why
        await writer.drain()
        return
    writer.write(handshake.response_101(request))

    # 2. Frames (section 5). The reader unmasks client frames and checks them;
    #    what it returns is whole messages and control frames.
    incoming = frames.Reader("server", max_size=max_size)
    data = request.rest  # bytes the client sent right after its request
    try:
        while True:
            try:
                events = incoming.feed(data)
            except ProtocolError as error:
                # 7.1.7 "Fail the WebSocket Connection": send a close frame
                # with the code (1002, 1007, 1009...), then close TCP.
                await send(writer, Frame.close(error.code, _reason(str(error))))
                return
            for event in events:
                if isinstance(event, Message):
                    try:
                        reply = handler(event.data)
                        if inspect.isawaitable(reply):
                            reply = await reply
                        answer = _reply_frame(reply)
                    except Exception:
                        # A bug in the handler: 1011, internal error (7.4.1).
                        await send(writer, Frame.close(CloseCode.INTERNAL_ERROR, "internal error"))
                        raise
                    if answer is not None:
                        await send(writer, answer)
                elif event.opcode == Opcode.PING:
                    # 5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send
                    # a Pong frame in response", with the same application data.
                    await send(writer, Frame.pong(event.payload))
                elif event.opcode == Opcode.CLOSE:
                    # 5.5.1: answer with a close frame, typically echoing the
                    # code; then the server closes TCP first (7.1.1).
                    code, reason = frames.parse_close(event.payload)
                    echoed = None if code == CloseCode.NO_STATUS_RCVD else code
                    await send(writer, Frame.close(echoed, reason))
                    return
                # A PONG needs no answer (5.5.3).
            data = await reader.read(65536)
            if not data:
                return  # TCP closed without a close frame: 1006 for the client
    except asyncio.CancelledError:
        # The server is stopping: tell the client why (1001, going away).
        writer.write(frames.encode(Frame.close(CloseCode.GOING_AWAY, "server stopping")))
        raise


async def send(writer: asyncio.StreamWriter, frame: Frame) -> None:
    """Write one frame, unmasked: servers never mask (section 5.1)."""
    writer.write(frames.encode(frame))
    await writer.drain()


def _reply_frame(reply: Any) -> Frame | None:
    """The frame that carries a handler's reply: text for str, binary for bytes."""
    if reply is None:
        return None
    if isinstance(reply, str):
        return Frame.text(reply)
    if isinstance(reply, (bytes, bytearray, memoryview)):
        return Frame.binary(bytes(reply))
    raise TypeError(f"the handler returned {type(reply).__name__}; return str, bytes or None")


def _reason(text: str) -> str:
    """A close reason fits in 123 bytes of UTF-8 (section 5.5)."""
    return text.encode()[:123].decode(errors="ignore")


# -- Running it in the background of a notebook ----------------------------------


@dataclass(eq=False)
class ScratchServer(Background):
    """A handle on a server started by :func:`serve_streams` or :func:`serve_scratch`.

    ``name``, ``host``, ``port``, ``url``, ``mode`` (always ``"task"``),
    ``connections``, ``uptime``, ``errors``, ``running``; ``stop()`` and
    ``await aclose()`` stop it within about ``stop_timeout`` seconds.
    """

    name: str
    host: str
    port: int
    mode: str = "task"
    started: float = field(default_factory=time.time)
    errors: list[BaseException] = field(default_factory=list)
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    _server: asyncio.base_events.Server | None = field(default=None, repr=False)
    _tasks: dict[asyncio.Task[Any], asyncio.StreamWriter] = field(default_factory=dict, repr=False)
    _shown: set[str] = field(default_factory=set, repr=False)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    @property
    def connections(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<wslab.ScratchServer {self.name!r} {self.url} {state}, {self.connections} connection(s)>"

    async def _serve(self, code: Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks[task] = writer
        try:
            await code(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        except Exception as exc:  # noqa: BLE001 - reported, kept, never lost
            self._report(exc)
        finally:
            self._tasks.pop(task, None)
            writer.close()

    def _report(self, exc: BaseException) -> None:
        self.errors.append(exc)
        key = f"{type(exc).__name__}: {exc}"
        if key in self._shown:
            return  # the same error on every connection: say it once
        self._shown.add(key)
        detail = "" if isinstance(exc, NotImplementedError) else "".join(traceback.format_exception(exc))
        print(
            f"! server {self.name!r}: the connection code raised {key}\n"
            f"! the client's TCP connection was closed; the exception is kept in srv.errors\n{detail}",
            file=sys.stderr,
            flush=True,
        )

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.stop_timeout)
        for writer in list(self._tasks.values()):
            writer.transport.abort()  # stragglers that ignored the cancel

    def _begin_close(self) -> None:
        super()._begin_close()  # _close() as a task, when the cell returns
        assert self._server is not None
        self._server.close()  # stop listening now

    def _release(self) -> None:
        if self._server is not None:
            self._server.close()  # interpreter exit: release the port


async def serve_streams(
    code: Connection,
    name: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    allow_network: bool = False,
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
) -> ScratchServer:
    """Run ``async def code(reader, writer)`` for every TCP client, in the background.

    ``srv = await wslab.serve_streams(my_connection, name="mine")``: the
    server listens on ``host`` (``127.0.0.1``) and a port the OS picks
    (``srv.url``); a server already running under ``name`` is stopped first.
    """
    if not inspect.iscoroutinefunction(code):
        raise TypeError(
            f"{getattr(code, '__name__', code)!r} must be an async function: "
            f"write `async def connection(reader, writer): ...`"
        )
    _check_host(host, allow_network)
    _check_port(port)
    name = name or getattr(code, "__name__", "streams")
    await release(name)
    handle = ScratchServer(name, host, 0, stop_timeout=stop_timeout)
    handle._server = await asyncio.start_server(
        lambda r, w: handle._serve(code, r, w), host, port
    )
    handle._loop = asyncio.get_running_loop()
    handle.port = handle._server.sockets[0].getsockname()[1]
    register(handle)
    return handle


async def serve_scratch(
    handler: MessageHandler = echo,
    name: str = "scratch",
    *,
    max_size: int | None = DEFAULT_MAX_SIZE,
    **kwargs: Any,
) -> ScratchServer:
    """Start the reference from-scratch server: :func:`connection` with ``handler``.

    ``handler(message)`` returns the reply (default: :func:`echo`);
    ``max_size`` is the largest message in bytes (1009 beyond it). Other
    keyword arguments go to :func:`serve_streams`.

    >>> srv = await wslab.serve_scratch()
    >>> report = await wslab.check_server(srv)
    """

    async def scratch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await connection(reader, writer, handler=handler, max_size=max_size)

    return await serve_streams(scratch, name, **kwargs)
