"""A battery of RFC 6455 checks to point at any WebSocket echo server.

``report = await wslab.check_server(url)`` connects to an echo server once
per case, each time as a deliberately simple raw client, and runs one named
case per connection: echoes of every length form, fragments, a ping inside
a fragmented message, close codes, unmasked and reserved-bit frames, a
64-bit length with its top bit set, invalid UTF-8 (truncated, split across
fragments, surrogates, overlong), an oversized message, bad handshakes (no
key, no version, POST, an unknown version), and the server's own frames and
101s (unmasked, minimal lengths, no RSV bits, short unfragmented control
frames, valid close codes, no data after its close, valid UTF-8 text, no
subprotocol or extension it was not offered), the last checked on every
frame of every connection of the run (:mod:`.watch`).

Levels
------
Every case states the rule it checks at the RFC's own level, with the
section and the RFC's exact words (``case.rule``):

* **MUST**: a server that breaks it fails; ``report.failed`` lists these
  cases only, and ``python -m wslab battery`` exits 1;
* **SHOULD**: a note, listed apart (``report.should_notes``): 7.1.7, send a
  close frame before dropping TCP when failing the connection;
* **usual**: what the RFC calls typical ("typically echos", "such as 400",
  the codes 1002/1007/1009 that "Endpoints MAY use"), and two cases the RFC
  leaves open (a close with code 2999, a close reason that is not UTF-8;
  decided in ``COVERAGE.md``): a remark.

A case may not apply: a server that refuses a binary message with close 1003
(7.4.1 allows a text-only endpoint exactly that) gets its binary echoes
"not applicable" with that reason, and fails no rule it did not break.

Some MUSTs bind the sender: a client "MUST NOT" fragment a ping. For those
the battery sends the broken frame and checks that the server does not go
on as if it were valid (it fails the connection, or, for a bad close code,
does not send that code back), as the Autobahn TestSuite does.

What a full MUST pass proves, and what not
------------------------------------------
It proves the server follows every rule checked here, on these inputs, and
that every frame and 101 it sent during the run obeys the rules on a
server's own frames. It does not prove conformance: RFC 6455 has more rules
than a few dozen connections can probe (every close code, every UTF-8 edge,
extensions, subprotocols, timing under load). ``COVERAGE.md`` beside this
file lists every server requirement a client can observe, with the case that
checks it or why none does. The Autobahn TestSuite
(https://github.com/crossbario/autobahn-testsuite) is the industry's full
conformance run, with "over 500 test cases" (its own description).

Which library breaks which MUST (pinned by ``tests/test_battery_zoo.py``)
-------------------------------------------------------------------------
On the installed versions (:data:`KNOWN_BREAKS` has the details):

* websockets 17.4 refuses an unknown ``Sec-WebSocket-Version`` with 400 and
  no ``Sec-WebSocket-Version`` header (4.4: it MUST list the versions it
  speaks), and so do uvicorn 0.55 on its websockets backend and Hypercorn
  0.18;
* aiohttp 3.14.5 does the same, and accepts an unmasked client frame
  (5.1: the server MUST close the connection);
* tornado 6.6.1 accepts an unmasked client frame, and echoes close codes
  1005, 1006, 1015 and 999 back (7.4.1: 1005, 1006 and 1015 MUST NOT be set
  in a close frame; 999 is not a status code);
* wsproto 1.3.2 (behind a small server of the zoo's), Node's ws 8, uvicorn
  on wsproto, autobahn 26.11 and wslab's reference server break none.

Lower-level notes, never failures: tornado fails the connection without a
close frame (7.1.7 SHOULD); aiohttp answers a close with 1000 rather than
echoing the code (5.5.1 "typically"); Node's ws and websockets refuse with
400 rather than 426 ("such as").

Design note
-----------
* **Independent** of the code it judges: frames are crafted with
  ``struct`` in :mod:`.wire`, the accept key is checked with
  ``websockets.utils.accept_key``; nothing imports ``wslab.protocol.frames`` or
  ``wslab.protocol.handshake``. The checks for the pieces of a server
  (:func:`check_handshake_response`, :func:`check_read_frame`, lesson 06's
  exercises) judge with the websockets library's client and frames.
* **No false failures from timing.** The probe reads the socket in a task
  of its own from connect to close, and writes on the side: a server that
  refuses a message with 1009 and hangs up mid-write is seen refusing,
  whatever the kernel schedules (see :mod:`.wire`). A server's pings are
  answered and its unsolicited pongs skipped in every case.
* **Nothing hangs, nothing grows.** Each case runs under its own timeout
  (``timeout`` seconds, 5 by default, at most 120); a server that does not
  answer fails that case with "no answer within 5 s" and the battery moves
  on, the whole run within ``timeout`` × (cases + 1). A case that gets
  nothing at all is followed by a heartbeat: a server silent to it too gets
  the rest "not run" at once (see :mod:`.runner`). Each case uses a fresh
  TCP connection, closed when the case ends, whatever happened. What the
  battery reads is bounded (a frame over 1 MiB is read through, not kept):
  60 MiB frames or a pong flood leave the grader under 100 MB (:mod:`.wire`).
* The server is assumed to **echo**. Its message size limit is a parameter
  (``max_size``, 1 MiB by default, as websockets' own): every case whose
  message is over it expects a refusal; ``max_size=None`` skips the
  oversized case.

The package, by concept: :mod:`.wire` (frames and the raw probe),
:mod:`.watch` (the rules checked on every server frame and 101),
:mod:`.case` (levels, rules, shared steps), :mod:`.cases` (the cases, by
RFC section), :mod:`.runner` (``check_server``), :mod:`.report` (the table,
JSON, JUnit XML), :mod:`.pieces` (the exercise checks), :mod:`.cli`;
``COVERAGE.md`` (what is checked, and what cannot be).
"""

from __future__ import annotations

from .case import LEVELS, MUST, SHOULD, USUAL, Case, Note, Rule
from .cases import CASES
from .cli import main
from .pieces import check_handshake_response, check_read_frame
from .report import CaseResult, Report
from .runner import DEFAULT_MAX_SIZE, DEFAULT_TIMEOUT, check_server, check_server_sync
from .craft import encode_frame
from .wire import MAX_SERVER_FRAME

__all__ = [
    "check_server",
    "check_server_sync",
    "Report",
    "CaseResult",
    "Case",
    "Rule",
    "Note",
    "MUST",
    "SHOULD",
    "USUAL",
    "LEVELS",
    "CASES",
    "KNOWN_BREAKS",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_TIMEOUT",
    "MAX_SERVER_FRAME",
    "encode_frame",
    "check_handshake_response",
    "check_read_frame",
    "main",
]

#: Which library breaks which MUST, as the zoo test (``tests/test_battery_zoo.py``) finds and pins it
#: on the versions installed: websockets 17.4, aiohttp 3.14.5, tornado 6.6.1, uvicorn 0.55.0 (with its
#: websockets backend), Hypercorn 0.18.0 (wsproto 1.3.2, Node's ws 8, uvicorn with wsproto and
#: autobahn 26.11.1 break none).
KNOWN_BREAKS: dict[str, dict[str, str]] = {
    "websockets": {
        "handshake with version 25 (unknown)":
            "refuses an unknown version with 400 but no Sec-WebSocket-Version header (4.4 MUST)",
    },
    "aiohttp": {
        "handshake with version 25 (unknown)":
            "refuses an unknown version with 400 but no Sec-WebSocket-Version header (4.4 MUST)",
        "unmasked client frame": "accepts and echoes an unmasked client frame (5.1 MUST close the connection)",
    },
    "tornado": {
        "unmasked client frame": "accepts and echoes an unmasked client frame (5.1 MUST close the connection)",
        "close code 1005": "echoes close code 1005 back (7.4.1 MUST NOT be set)",
        "close code 1006": "echoes close code 1006 back (7.4.1 MUST NOT be set)",
        "close code 1015": "echoes close code 1015 back (7.4.1 MUST NOT be set)",
        "close code 999": "echoes close code 999 back (5.5.1, 7.4.2: not a status code of 7.4)",
    },
    "uvicorn-websockets": {
        "handshake with version 25 (unknown)":
            "refuses an unknown version with 400 but no Sec-WebSocket-Version header (4.4 MUST)",
    },
    "hypercorn": {
        "handshake with version 25 (unknown)":
            "refuses an unknown version with 400 but no Sec-WebSocket-Version header (4.4 MUST)",
    },
}
