"""How fast wslab.frames decodes and encodes frames, against websockets, at 16 B to 1 MiB.

    python benchmarks/bench_frames.py            # about a minute
    python benchmarks/bench_frames.py --quick    # a few seconds

What each side really does (websockets 17, as its connections drive it):

* decode. websockets: ``Frame.parse`` is a generator fed by a ``StreamReader``
  (``read_exact``), parses the header with ``struct`` in Python and unmasks
  with ``apply_mask`` from ``websockets.speedups``, a C extension (pure Python
  only when built without it). wslab: ``decode()`` parses the header with
  ``struct`` in Python and unmasks with the same C ``apply_mask`` when it can
  be imported, else ``wslab.protocol.frames.mask`` (pure Python, one big-integer XOR).
  ``Reader.feed()`` is shown too: it also reassembles messages and checks UTF-8
  for text, which ``Frame.parse`` does not (websockets does that later).
* encode. websockets: ``Frame.serialize(mask=True)`` draws a fresh key per frame
  (``secrets.token_bytes(4)``, that is ``os.urandom``) and masks with the C
  ``apply_mask``. wslab: ``encode(frame, mask_key=os.urandom(4))``, a fresh key
  per frame too, masked the same way.
* Every masked frame decoded has its own key as well (frames built in advance).

Each ratio is wslab's time over websockets' time for the same batch of frames
(below 1: wslab is faster), measured in turns (each side's best of 3 calls),
repeated; the table prints the minimum, median and maximum over the repeats. The machine may be shared: read
the ratios, not the absolute rates, and the spread says how noisy the run was.
Target (issue 15): 1 MiB decode and encode within 2x of websockets.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _verdict import verdict  # noqa: E402

from websockets import frames as wsframes  # noqa: E402
from websockets.streams import StreamReader  # noqa: E402

from wslab import frames as wslab_frames  # noqa: E402
from wslab.protocol.frames import Frame, Opcode, Reader, decode, encode, mask, mask_naive  # noqa: E402

try:
    from websockets.speedups import apply_mask as c_apply_mask
except ImportError:  # websockets built without its C extension
    c_apply_mask = None

SIZES = [(16, "16 B"), (1024, "1 KiB"), (65536, "64 KiB"), (2**20, "1 MiB")]
KEY = bytes.fromhex("37fa213d")


def batch(size: int, budget: int) -> int:
    """How many frames of ``size`` bytes make one timed batch (about ``budget`` payload bytes, 1-5,000)."""
    return max(1, min(5000, budget // max(size, 1)))


def timed(run: Callable[[], object], best_of: int = 1) -> float:
    """Seconds one call of ``run`` takes: the best of ``best_of`` calls (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(best_of):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def compare(ours: Callable[[], object], theirs: Callable[[], object], repeats: int) -> list[float]:
    """Ratios ours / theirs, one per repeat, the two timed back to back (order swapped each turn).

    Each side's time in a repeat is the best of 3 calls, so that one preemption by
    another process does not make a ratio; the spread over repeats shows what is left.
    """
    ours(), theirs()  # warm up: caches, first allocations
    ratios = []
    for i in range(repeats):
        if i % 2:
            t_theirs, t_ours = timed(theirs, 3), timed(ours, 3)
        else:
            t_ours, t_theirs = timed(ours, 3), timed(theirs, 3)
        ratios.append(t_ours / t_theirs)
    return ratios


def decoders(size: int, n: int, masked: bool) -> dict[str, Callable[[], object]]:
    payload = os.urandom(size)
    distinct = min(n, 8)  # a fresh key per frame, without holding n copies of a 1 MiB frame
    wires = [wsframes.Frame(wsframes.Opcode.BINARY, payload).serialize(mask=masked) for _ in range(distinct)]
    frames = [wires[i % distinct] for i in range(n)]
    stream = b"".join(frames) if size <= 65536 else None

    def wslab_decode() -> None:
        for wire in frames:
            decode(wire, mask_required=masked)

    def wslab_reader() -> None:
        reader = Reader("server" if masked else "client", max_size=None)
        if stream is not None:
            events = reader.feed(stream)
        else:
            events = [e for wire in frames for e in reader.feed(wire)]
        assert len(events) == n

    def websockets_parse() -> None:
        # As websockets drives it: one StreamReader for the connection, one parse() generator per frame.
        reader = StreamReader()
        if stream is not None:
            reader.feed_data(stream)
        for wire in frames:
            if stream is None:
                reader.feed_data(wire)
            parser = wsframes.Frame.parse(reader.read_exact, mask=masked)
            try:
                next(parser)
            except StopIteration:
                pass

    return {"decode()": wslab_decode, "Reader.feed()": wslab_reader, "parse": websockets_parse}


def encoders(size: int, n: int, masked: bool) -> dict[str, Callable[[], object]]:
    payload = os.urandom(size)
    ours = Frame(Opcode.BINARY, payload)
    theirs = wsframes.Frame(wsframes.Opcode.BINARY, payload)

    def wslab_encode() -> None:
        for _ in range(n):
            encode(ours, mask_key=os.urandom(4) if masked else None)

    def websockets_serialize() -> None:
        for _ in range(n):
            theirs.serialize(mask=masked)  # draws its own key per frame when masked

    return {"encode()": wslab_encode, "serialize": websockets_serialize}


def spread(ratios: list[float]) -> str:
    return f"{min(ratios):5.2f} {statistics.median(ratios):5.2f} {max(ratios):5.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller batches")
    parser.add_argument("--repeats", type=int, help="repeats per ratio (default 9, quick 3)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 9)
    budget = 2**21 if args.quick else 2**23  # payload bytes per timed batch
    fast = getattr(wslab_frames, "FAST_MASK", False)
    helper = "the C apply_mask" if fast else "wslab.protocol.frames.mask (pure Python)"

    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; wslab unmasks with {helper}; "
          f"websockets with {'the C apply_mask' if c_apply_mask else 'pure Python'}")
    print(f"ratio = wslab time / websockets time for the same frames (below 1: wslab faster); "
          f"min / median / max over {repeats} repeats;\nmasked = client to server (a fresh key per frame), "
          f"unmasked = server to client")
    print(f"\n{'wslab / websockets':<36} {'frames':<9} {'size':>6}   {'min':>5} {'med':>5} {'max':>5}   per batch")
    headline: dict[str, list[float]] = {}
    for masked in (True, False):
        side = "masked" if masked else "unmasked"
        for size, label in SIZES:
            n = batch(size, budget)
            found = decoders(size, n, masked)
            for ours in ("decode()", "Reader.feed()"):
                ratios = compare(found[ours], found["parse"], repeats)
                print(f"{ours + ' / Frame.parse':<36} {side:<9} {label:>6}   {spread(ratios)}   {n}")
                if size == 2**20:
                    headline[f"{ours} 1 MiB {side}"] = ratios
            found = encoders(size, n, masked)
            ratios = compare(found["encode()"], found["serialize"], repeats)
            print(f"{'encode() / Frame.serialize':<36} {side:<9} {label:>6}   {spread(ratios)}   {n}")
            if size == 2**20:
                headline[f"encode() 1 MiB {side}"] = ratios

    print("\nunmasking alone (MB/s, median of the repeats; mask_naive and mask are the teaching versions)")
    for size, label in ((1024, "1 KiB"), (2**20, "1 MiB")):
        data = os.urandom(size)
        helpers: dict[str, Callable[[], object]] = {}
        if size <= 1024:
            helpers["mask_naive (the RFC's loop)"] = lambda: mask_naive(data, KEY)
        helpers["mask (int.from_bytes XOR)"] = lambda: mask(data, KEY)
        if c_apply_mask is not None:
            helpers["websockets.speedups.apply_mask (C)"] = lambda: c_apply_mask(data, KEY)
        for name, run in helpers.items():
            rounds = max(1, budget // size // 8)
            rates = [size * rounds / timed(lambda: [run() for _ in range(rounds)]) for _ in range(repeats)]
            print(f"  {label:>6} {name:<38} {statistics.median(rates) / 1e6:>10,.0f}")

    print("\ntarget: 1 MiB decode and encode within 2x of websockets")
    ok = True
    for name, ratios in headline.items():
        ok &= verdict(f"{name}, wslab / websockets", ratios, at_most=2.0)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
