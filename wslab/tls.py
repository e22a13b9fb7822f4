"""wss:// on loopback: a throwaway certificate authority and TLS servers that use it.

    ca = wslab.tls.make_ca()                       # a new CA, in memory, for this session
    srv = await wslab.tls.serve_tls(handler, ca=ca, name="secure")
    async with connect(srv.url, ssl=ca.client_context()) as ws: ...   # srv.url is wss://

Design note
-----------
Certificates come from trustme: a CA made in memory when :func:`make_ca` runs,
and one leaf certificate it signs for ``127.0.0.1`` and ``localhost``. No key
or certificate is ever written to the repository; :meth:`CA.write_ca_pem`
writes the CA's *public* certificate to a path you give (a browser or ``curl``
can trust it), nothing else.

* Trust is never switched off. A client trusts this CA and nothing else
  (:meth:`CA.client_context`: hostname checks on, certificate required); a
  client that does not know the CA fails with ``SSLCertVerificationError``.
* Chromium is told about the leaf certificate's public key with
  ``--ignore-certificate-errors-spki-list=<base64 SHA-256 of its
  SubjectPublicKeyInfo>`` (:meth:`CA.chromium_args`): only a certificate with
  that key is accepted; every other site keeps full checks.
* The server context issues no TLS 1.3 session tickets (``num_tickets = 0``):
  with them the server sends a ticket right after the client's Finished, and
  the flights the wiretap sees (:func:`flights`) depend on a race. Without
  them, a TLS 1.3 connection is always: client hello, server hello ...
  finished, client finished + the upgrade request, the 101.
* :func:`serve_tls` is :func:`wslab.serve` with ``ssl=``: the same registry,
  the same stop rules; the handle is a :class:`TLSServer`, whose ``url`` says
  ``wss://``.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable

from .display import Table
from .servers import Server, serve, serve_in_thread

__all__ = [
    "CA",
    "make_ca",
    "TLSServer",
    "serve_tls",
    "serve_tls_in_thread",
    "flights",
    "round_trips",
    "handshake_times",
    "compare_handshakes",
]


class CA:
    """A throwaway certificate authority and the one server certificate it signed.

    ``ca_pem`` is the CA certificate (public, PEM text); ``names`` the names
    the server certificate is valid for; ``spki_sha256`` the base64 SHA-256
    of the server certificate's public key (what Chromium's
    ``--ignore-certificate-errors-spki-list`` takes).
    """

    def __init__(self, names: tuple[str, ...] = ("127.0.0.1", "localhost")) -> None:
        import trustme

        if not names:
            raise ValueError("a certificate needs at least one name, e.g. make_ca(('127.0.0.1',))")
        self.names = tuple(names)
        self._ca = trustme.CA(organization_name="wslab throwaway test CA")
        self._leaf = self._ca.issue_cert(*self.names)

    @property
    def ca_pem(self) -> str:
        return self._ca.cert_pem.bytes().decode()

    @property
    def cert_pem(self) -> str:
        """The server's certificate (public, PEM text)."""
        return self._leaf.cert_chain_pems[0].bytes().decode()

    @property
    def spki_sha256(self) -> str:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        cert = x509.load_pem_x509_certificate(self.cert_pem.encode())
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(hashlib.sha256(spki).digest()).decode()

    def server_context(self) -> ssl.SSLContext:
        """A server-side context holding the certificate and its key."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._leaf.configure_cert(ctx)
        ctx.num_tickets = 0  # see the design note
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client-side context that trusts this CA only (checks on: certificate and hostname)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=self.ca_pem)
        assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
        return ctx

    def chromium_args(self) -> list[str]:
        """Command-line flags that make Chromium accept this server certificate, and only it."""
        return [f"--ignore-certificate-errors-spki-list={self.spki_sha256}"]

    def write_ca_pem(self, path: str | Path) -> Path:
        """Write the CA certificate (public, no key) to ``path``; returns the path."""
        path = Path(path)
        path.write_text(self.ca_pem)
        return path

    def __repr__(self) -> str:
        return f"<wslab.tls.CA for {', '.join(self.names)}, SPKI sha256 {self.spki_sha256[:12]}...>"


def make_ca(names: tuple[str, ...] = ("127.0.0.1", "localhost")) -> CA:
    """A new throwaway CA and a server certificate for ``names`` (in memory only)."""
    return CA(names)


@dataclass(eq=False)
class TLSServer(Server):
    """A :class:`wslab.Server` that speaks TLS: its ``url`` is ``wss://``."""

    @property
    def url(self) -> str:
        return "wss" + super().url[2:]

    @property
    def page_url(self) -> str:
        return "https" + super().url[2:]

    def __repr__(self) -> str:
        return super().__repr__().replace("<wslab.Server", "<wslab.tls.TLSServer", 1)


def _tls_kwargs(ca: CA, kwargs: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(ca, CA):
        raise TypeError(f"ca must be a wslab.tls.CA (from wslab.tls.make_ca()), got {ca!r}")
    if "ssl" in kwargs:
        raise TypeError("pass ca=..., not ssl=...: serve_tls builds the server's context from the CA")
    return {**kwargs, "ssl": ca.server_context()}


def _as_tls(server: Server) -> TLSServer:
    server.__class__ = TLSServer  # same fields; only url and repr differ
    return server  # type: ignore[return-value]


def serve_tls(handler: Any, name: str | None = None, *, ca: CA, **kwargs: Any) -> Awaitable[TLSServer]:
    """Like :func:`wslab.serve`, over TLS with ``ca``'s certificate; ``await`` it.

    Other keyword arguments go to :func:`wslab.serve` (``process_request``,
    ``ping_interval``, ...).
    """
    pending = serve(handler, name, **_tls_kwargs(ca, kwargs))

    async def start() -> TLSServer:
        return _as_tls(await pending)

    return start()


def serve_tls_in_thread(handler: Any, name: str | None = None, *, ca: CA, **kwargs: Any) -> TLSServer:
    """Like :func:`wslab.serve_in_thread`, over TLS with ``ca``'s certificate."""
    return _as_tls(serve_in_thread(handler, name, **_tls_kwargs(ca, kwargs)))


# What the handshake costs


def flights(capture: Any, conn: int) -> list[tuple[str, int]]:
    """The wiretap's chunks of connection ``conn`` grouped into flights: ``[(">", bytes), ("<", bytes), ...]``.

    A flight is what one side sent before the other answered: consecutive
    chunks in the same direction. Each change of direction is half a round trip.
    """
    out: list[tuple[str, int]] = []
    for chunk in capture.chunks:
        if chunk.conn != conn:
            continue
        if out and out[-1][0] == chunk.direction:
            out[-1] = (chunk.direction, out[-1][1] + len(chunk.data))
        else:
            out.append((chunk.direction, len(chunk.data)))
    return out


def round_trips(capture: Any, conn: int) -> int:
    """How many times the client spoke and then waited for the server, on connection ``conn``.

    Read it right after the connection opened, before anything else is sent:
    then it counts the round trips the opening took after TCP's own (which the
    wiretap does not see): 1 for ``ws://`` (the upgrade request and its 101),
    2 for ``wss://`` with TLS 1.3 (client hello; then client finished with the
    upgrade request right behind it), 3 with TLS 1.2.
    """
    return sum(1 for direction, _ in flights(capture, conn) if direction == ">")


async def _one_handshake(url: str, ssl_ctx: ssl.SSLContext | None) -> float:
    from websockets.asyncio.client import connect

    started = time.perf_counter()
    ws = await connect(url, ssl=ssl_ctx, compression=None, open_timeout=10)
    elapsed = time.perf_counter() - started
    await ws.close()
    return elapsed


async def handshake_times(url: str, *, ssl: ssl.SSLContext | None = None, n: int = 20) -> list[float]:
    """Open and close ``n`` connections to ``url``; each one's time to open (TCP, TLS, upgrade), seconds."""
    if n < 1:
        raise ValueError(f"n must be at least 1 connection, got {n!r}")
    return [await _one_handshake(url, ssl) for _ in range(n)]


async def compare_handshakes(ws_url: str, wss_url: str, *, ca: CA, n: int = 20) -> Table:
    """Time ``n`` openings of each, interleaved so both see the same load; min / median / max in ms."""
    plain: list[float] = []
    secure: list[float] = []
    ctx = ca.client_context()
    for _ in range(n):
        plain.append(await _one_handshake(ws_url, None))
        secure.append(await _one_handshake(wss_url, ctx))
    rows = []
    for label, times in (("ws://", plain), ("wss://", secure)):
        ms = sorted(t * 1000 for t in times)
        rows.append([label, f"{ms[0]:.2f}", f"{statistics.median(ms):.2f}", f"{ms[-1]:.2f}"])
    ratio = statistics.median(secure) / statistics.median(plain)
    table = Table(["scheme", "min ms", "median ms", "max ms"], rows,
                  title=f"time to open a connection on loopback, {n} each (wss/ws median: {ratio:.1f}x)",
                  align_right={1, 2, 3})
    table.raw = {"ws": plain, "wss": secure}  # type: ignore[attr-defined]
    table.ratio = ratio  # type: ignore[attr-defined]
    return table
