"""WebSocket frames, bit by bit (RFC 6455 section 5).

Design note
-----------
Three layers, each usable on its own, each in a module of its own (import
everything from here, ``wslab.protocol.frames``, the public surface):

* :func:`encode` / :func:`decode` turn one :class:`Frame` into wire bytes and
  back. ``decode`` never blocks and never guesses: given too few bytes it says
  how many more it needs; given bytes that break the RFC it raises
  :class:`ProtocolError`, which carries the close code a peer must send and the
  RFC section (``frame_codec.py``, with :class:`Frame`, masking and close
  payloads).
* :class:`Reader` is the incremental side of a connection. Feed it bytes in any
  chunking (one byte at a time is fine); it returns control frames and whole
  messages, reassembled from fragments, checks the rules that span frames
  (fragmentation, UTF-8 across fragments, size limit, who masks) and, when
  permessage-deflate was negotiated, inflates compressed messages (RFC 7692),
  checking the size limit on every frame's header and on the inflated total
  (``frame_reader.py``, with :class:`Message` and :func:`inflate`).
* :func:`explain` draws a frame's header bit by bit, for a learner to read;
  :func:`transcript` turns a captured conversation into one line per frame
  (the wiretap's ``tap.frames()`` uses it). Both inflate at most 1 MiB of a
  message, so a deflate bomb cannot stall or swell a notebook
  (``frame_drawing.py``).

What must never happen: a reader that waits forever for a frame whose declared
length is absurd (``max_size`` stops it with 1009), an exception other than
:class:`ProtocolError` escaping from :meth:`Reader.feed` for any input, a
text message handed over before its UTF-8 has been checked, or events lost to
a later bad frame. When :meth:`Reader.feed` meets a bad frame it raises
:class:`ProtocolError` with ``error.events``: every event the same call decoded
before that frame, in order (the frame that failed is not among them). A
server answers those first (echo the message, pong the ping), then closes with
``error.code``, as websockets and wsproto do; so whole and chunked feeding give
the same events and the same error.

Masking (section 5.3) is shown twice for teaching: :func:`mask_naive` is the
RFC's loop, one byte at a time; :func:`mask` XORs the whole payload as one big
integer, some 30 times faster in pure Python. The codec itself (``encode``,
``decode``, ``Reader``) masks with websockets' C helper,
``websockets.speedups.apply_mask``, some 20 times faster again at 1 KiB and
over 100 times at 1 MiB (``benchmarks/bench_frames.py``), and falls back to :func:`mask` where websockets was built without
its C extension (``FAST_MASK`` says which). Large payloads are copied as
little as they can be: a frame is unmasked straight out of the bytes fed, and a
fragmented message is joined once, at its last frame.

>>> frame, used = decode(bytes.fromhex("81 05 48 65 6c 6c 6f"))
>>> print(frame, used)
TEXT 'Hello' [5 bytes] 7
"""

from __future__ import annotations

from . import frame_codec as _codec
from .frame_codec import (  # noqa: F401 (FAST_MASK: not in __all__, importable as before)
    FAST_MASK,
    CloseCode,
    Frame,
    Message,
    Opcode,
    ProtocolError,
    close_payload,
    decode,
    encode,
    mask,
    mask_naive,
    parse_close,
)
from .frame_drawing import EXPLAIN_INFLATE_LIMIT, Explanation, explain, transcript  # noqa: F401
from .frame_reader import DEFLATE_TAIL, Event, Reader, inflate  # noqa: F401

__all__ = [
    # The codec's names: the vocabulary, Frame and Message, one frame to bytes and back, masking, close payloads
    *(name for name in _codec.__all__ if name != "FAST_MASK"),
    # The reader of a connection's bytes, and permessage-deflate
    "Reader",
    "inflate",
    # Frames drawn for a learner
    "explain",
    "Explanation",
    "transcript",
]

# Also importable from here, as before the split, though not in __all__:
# FAST_MASK, DEFLATE_TAIL, EXPLAIN_INFLATE_LIMIT and Event (Frame | Message).
