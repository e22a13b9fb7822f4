"""The clients: every transport delivers every event exactly once, in order (wslab/lab/transports.py).

Byte counts through the wiretap are checked against an independent count
taken on the client's own socket (a counting httpcore network backend, a
counting websockets protocol).
"""

from __future__ import annotations

import asyncio

import httpcore
import httpx
import pytest
from websockets.asyncio.client import ClientConnection

import wslab
from wslab.lab.events import poisson
from wslab.lab.labserver import lab_server, lab_server_in_thread
from wslab.lab.transports import TRANSPORTS, DeliveryError, ReceiveTimeout, compare, receive

from .conftest import run, seconds


async def until(condition, limit: float = 5) -> None:
    async with asyncio.timeout(seconds(limit)):
        while not condition():
            await asyncio.sleep(0.001)


async def deliver(transport: str, lab, gaps, **kwargs):
    """Start a client, publish on the schedule once it listens, return its result."""
    ready = asyncio.Event()
    client = asyncio.ensure_future(
        receive(transport, lab, len(gaps), on_ready=ready.set, timeout=seconds(20), **kwargs)
    )
    await asyncio.wait({client, asyncio.ensure_future(ready.wait())}, return_when=asyncio.FIRST_COMPLETED)
    if client.done():
        return client.result()
    published = await lab.run_schedule(gaps)
    result = await client
    return result, published


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_each_transport_delivers_every_event_once_and_in_order(transport):
    async def main():
        lab = await lab_server()
        lab.source.publish_many(["before"] * 3)  # not wanted: the client starts at "now"
        try:
            return await deliver(transport, lab, poisson(0.01, 12, seed=5), interval=0.02)
        finally:
            await lab.aclose()

    result, published = run(main(), timeout=30)
    assert result.seqs == [e.seq for e in published] == list(range(4, 16))
    assert [d.created for d in result.deliveries] == [e.created for e in published]
    assert all(d.received >= d.created for d in result.deliveries)
    assert result.requests >= 1 and result.setup_s > 0


@pytest.mark.parametrize("transport", ["short_poll", "long_poll"])
def test_polling_delivers_every_event_when_events_come_faster_than_polls(transport):
    async def main():
        lab = await lab_server()
        try:
            # 30 events in bursts, with 0 s gaps inside a burst
            return await deliver(transport, lab, ([0.03] + [0.0] * 9) * 3, interval=0.05)
        finally:
            await lab.aclose()

    result, published = run(main(), timeout=30)
    assert result.seqs == [e.seq for e in published]
    assert result.requests < len(published)  # several events per answer


def test_short_polling_counts_empty_answers_when_nothing_happens():
    async def main():
        lab = await lab_server()
        try:
            client = asyncio.ensure_future(receive("short_poll", lab, 1, interval=0.01, timeout=seconds(10)))
            await until(lambda: lab.empty["poll"] >= 5)
            lab.publish()
            return await client
        finally:
            await lab.aclose()

    result = run(main())
    assert result.seqs == [1] and result.empty_responses >= 5
    assert result.requests == result.empty_responses + 1


def test_a_long_poll_that_times_out_is_sent_again_and_still_delivers():
    async def main():
        lab = await lab_server()
        try:
            client = asyncio.ensure_future(
                receive("long_poll", lab, 3, longpoll_timeout=0.02, timeout=seconds(10))
            )
            await until(lambda: lab.empty["longpoll"] >= 2)
            lab.source.publish_many("abc")
            return await client
        finally:
            await lab.aclose()

    result = run(main())
    assert result.seqs == [1, 2, 3]
    assert result.empty_responses >= 2 and result.setup_requests == 1
    assert result.requests == result.empty_responses + 1  # one answer brought all three


def test_sse_client_reconnects_with_last_event_id_and_misses_nothing():
    async def main():
        lab = await lab_server()
        try:
            ready = asyncio.Event()
            client = asyncio.ensure_future(
                receive("sse", lab, 6, on_ready=ready.set, reconnect_delay=0, timeout=seconds(10))
            )
            await ready.wait()
            lab.source.publish_many("abc")
            lab.end_streams()  # the stream breaks, as a proxy's timeout would
            await until(lambda: lab.requests["events"] == 2)
            lab.source.publish_many("def")
            return await client, lab.requests["resumes"]
        finally:
            await lab.aclose()

    result, resumes = run(main())
    assert result.seqs == [1, 2, 3, 4, 5, 6]
    assert result.reconnects == 1 and result.requests == 2 and resumes == 1


def test_a_client_started_at_cursor_zero_gets_the_backlog():
    async def main():
        lab = await lab_server()
        lab.source.publish_many(range(4))
        try:
            return [await receive(t, lab, 4, since=0, timeout=seconds(10)) for t in TRANSPORTS]
        finally:
            await lab.aclose()

    for result in run(main()):
        assert result.seqs == [1, 2, 3, 4], result.transport


def test_a_client_on_another_thread_reads_a_thread_mode_server_by_url():
    lab = lab_server_in_thread(name="lab-thread")
    try:
        async def main():
            ready = asyncio.Event()
            urls = {"http": lab.http_url, "ws": lab.ws_url}
            client = asyncio.ensure_future(receive("websocket", urls, 3, on_ready=ready.set, timeout=seconds(10)))
            await ready.wait()
            lab.source.publish_many("xyz")
            return await client

        assert run(main()).seqs == [1, 2, 3]
    finally:
        lab.stop()


def test_a_bad_cursor_raises_delivery_error_with_the_servers_message():
    async def main():
        lab = await lab_server()
        try:
            await receive("short_poll", lab, 1, since=5, timeout=seconds(10))
        finally:
            await lab.aclose()

    with pytest.raises(DeliveryError, match="from the future"):
        run(main())


def test_a_run_without_events_times_out_with_the_partial_result():
    async def main():
        lab = await lab_server()
        try:
            await receive("long_poll", lab, 2, timeout=0.2)
        finally:
            await lab.aclose()

    with pytest.raises(ReceiveTimeout, match="got 0 of 2 events") as info:
        run(main())
    assert info.value.result.seqs == []


def test_unknown_transports_are_refused_with_the_list():
    with pytest.raises(ValueError, match="short_poll, long_poll, sse, websocket, websocket_deflate"):
        run(receive("carrier_pigeon", {"http": "http://127.0.0.1:9/"}, 1))


# Bytes: the wiretap's count against a count on the client's own socket


class CountingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's own backend, counting every byte the client's socket writes and reads."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.up = self.down = 0

    async def connect_tcp(self, *args, **kwargs):
        return CountingStream(await self.inner.connect_tcp(*args, **kwargs), self)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class CountingStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner, counts: CountingBackend) -> None:
        self.inner, self.counts = inner, counts

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = await self.inner.read(max_bytes, timeout)
        self.counts.down += len(data)
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.counts.up += len(buffer)
        await self.inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def get_extra_info(self, info: str):
        return self.inner.get_extra_info(info)


class CountingConnection(ClientConnection):
    """websockets' client connection, counting bytes at the transport."""

    up = down = 0

    def connection_made(self, transport) -> None:
        write = transport.write

        def counted(data) -> None:
            CountingConnection.up += len(data)
            write(data)

        transport.write = counted
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        CountingConnection.down += len(data)
        super().data_received(data)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_byte_counts_through_the_wiretap_agree_with_the_clients_socket(transport):
    async def main():
        lab = await lab_server()
        websocket = transport.startswith("websocket")
        tap = await wslab.wiretap(lab.ws_url if websocket else lab.http_url, name="tap")
        kwargs = {}
        if websocket:
            CountingConnection.up = CountingConnection.down = 0
            kwargs["ws_options"] = {"create_connection": CountingConnection}
            counted = CountingConnection
        else:
            counted = CountingBackend()
            http = httpx.AsyncHTTPTransport()
            http._pool = httpcore.AsyncConnectionPool(network_backend=counted)
            kwargs["client"] = httpx.AsyncClient(transport=http, timeout=seconds(10))
        try:
            result, _ = await deliver(transport, lab, poisson(0.01, 8, seed=2), tap=tap, interval=0.02, **kwargs)
            if "client" in kwargs:
                await kwargs["client"].aclose()
            return result, counted.up, counted.down
        finally:
            await tap.aclose()
            await lab.aclose()

    result, up, down = run(main(), timeout=30)
    assert up > 0 and down > 0
    assert (result.bytes_up, result.bytes_down) == (up, down)
    assert result.bytes_per_event == (up + down) / 8


def test_compare_shows_one_row_per_result():
    async def main():
        lab = await lab_server()
        try:
            return [(await deliver(t, lab, [0.0, 0.01], interval=0.01))[0] for t in ("sse", "websocket")]
        finally:
            await lab.aclose()

    table = compare(run(main()))
    assert [row[0] for row in table.rows] == ["sse", "websocket"]
    assert "bytes/event" in str(table)
