"""What the link emulator costs, and how close to the set delay it delivers.

    python benchmarks/bench_link.py            # about half a minute
    python benchmarks/bench_link.py --quick

Two measurements, each repeated, with an independent clock: a blocking raw
TCP client and a blocking raw TCP echo server, each in its own thread,
stamping with ``time.perf_counter()``; the tap runs in its own thread
(``wiretap_in_thread``, as the latency lab uses it).

1. Overhead at ``rtt_ms=0``: echo round trips through a plain tap and through
   a tap with ``link=wslab.Link()`` (zero delay: the same relay plus the
   link's bookkeeping), interleaved; and bulk throughput both ways.
   Target: within 10 % of the plain tap.
2. Timing error at 100 ms: round trips through ``rtt_ms=100`` minus the plain
   tap's round trip (what the relay itself costs) minus 100 ms.
   Target: under 1 ms (median).

The machine is shared: absolute figures are noisy, ratios from one run are
what to read; the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import wslab  # noqa: E402


class EchoServer:
    """A blocking echo server: one thread per connection."""

    def __init__(self, *, discard: bool = False) -> None:
        self.discard = discard
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while data := conn.recv(65536):
                if not self.discard:
                    conn.sendall(data)

    def close(self) -> None:
        self.sock.close()


def round_trips(port: int, count: int, *, gap: float = 0.0) -> list[float]:
    """Milliseconds per 16-byte echo, ``count`` times, one at a time."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        out = []
        for i in range(count):
            message = f"{i:016d}".encode()
            started = time.perf_counter()
            sock.sendall(message)
            got = b""
            while len(got) < len(message):
                got += sock.recv(64)
            out.append((time.perf_counter() - started) * 1000)
            if gap:
                time.sleep(gap)  # pacing between samples, like events with gaps
        return out


def bulk(port: int, size: int) -> float:
    """MB/s pushing ``size`` bytes to a discard server, until it has closed."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        block = b"x" * 65536
        started = time.perf_counter()
        for _ in range(size // len(block)):
            sock.sendall(block)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
        return size / 1e6 / (time.perf_counter() - started)


def spread(values: list[float], unit: str = "ms", digits: int = 3) -> str:
    return (f"min {min(values):.{digits}f} / median {statistics.median(values):.{digits}f} / "
            f"max {max(values):.{digits}f} {unit}")


def main(quick: bool) -> None:
    repeats = 3 if quick else 7
    count = 200 if quick else 1000
    slow_count = 15 if quick else 40
    size = (8 if quick else 64) * 1024 * 1024

    echo = EchoServer()
    sink = EchoServer(discard=True)
    plain = wslab.wiretap_in_thread(("127.0.0.1", echo.port), name="bench-plain", max_capture=1024 * 1024)
    zero = wslab.wiretap_in_thread(("127.0.0.1", echo.port), name="bench-zero", link=wslab.Link(), max_capture=1024 * 1024)
    slow = wslab.wiretap_in_thread(("127.0.0.1", echo.port), name="bench-100", rtt_ms=100, max_capture=1024 * 1024)
    bulk_plain = wslab.wiretap_in_thread(("127.0.0.1", sink.port), name="bench-bulk-plain", max_capture=1024 * 1024)
    bulk_zero = wslab.wiretap_in_thread(("127.0.0.1", sink.port), name="bench-bulk-zero", link=wslab.Link(), max_capture=1024 * 1024)
    round_trips(plain.port, 50)
    round_trips(zero.port, 50)  # warm up

    ratios, medians_plain, medians_zero, bulk_ratios = [], [], [], []
    errors: list[float] = []
    repeat_errors: list[float] = []
    for _ in range(repeats):
        p = statistics.median(round_trips(plain.port, count))
        z = statistics.median(round_trips(zero.port, count))
        medians_plain.append(p)
        medians_zero.append(z)
        ratios.append(z / p)
        bulk_ratios.append(bulk(bulk_zero.port, size) / bulk(bulk_plain.port, size))
        base = statistics.median(round_trips(plain.port, slow_count, gap=0.01))
        delayed = round_trips(slow.port, slow_count, gap=0.01)
        these = [d - base - 100 for d in delayed]
        errors += these
        repeat_errors.append(statistics.median(these))

    wslab.stop_all()
    echo.close()
    sink.close()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.2f} on {os.cpu_count()} CPUs; {repeats} repeats")
    print(f"echo round trip, median of {count}, plain tap:       {spread(medians_plain)}")
    print(f"echo round trip, median of {count}, Link() at 0 ms:  {spread(medians_zero)}")
    print(f"  ratio link/plain per repeat: {spread(ratios, unit='', digits=3)} (target: at most 1.10)")
    print(f"bulk {size / 1e6:.0f} MB, throughput link/plain per repeat: {spread(bulk_ratios, unit='', digits=2)} "
          f"(target: at least 0.90)")
    print(f"timing error at rtt_ms=100 (round trip - plain tap's - 100 ms), {slow_count} per repeat:")
    print(f"  every sample: {spread(errors)}")
    print(f"  per-repeat medians: {spread(repeat_errors)} (target: median under 1 ms)")
    print(f"  clock's learned wake-up lag: {wslab.link.CLOCK.lag * 1000:.3f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, less data")
    main(parser.parse_args().quick)
