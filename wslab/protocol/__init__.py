"""The protocol core: RFC 6455 on bytes, with no I/O (lessons 02, 03 and 06).

Like h11 and wsproto, nothing here opens a socket or runs an event loop
(``pyproject.toml``'s import contract fails CI if it does): bytes in, bytes out.

* ``http_head.py``: HTTP/1.1 message heads, parsed and checked (RFC 9110/9112).
* ``handshake.py``: the opening handshake of section 4, both sides, with
  ``HandshakeError`` naming the section a request breaks.
* ``frames.py``: the public face of the frame code (``wslab.frames``), over
  ``frame_codec.py`` (one frame to bytes and back, section 5.2),
  ``frame_reader.py`` (a connection's bytes to messages: fragments, control
  frames, UTF-8, permessage-deflate) and ``frame_drawing.py`` (``explain()``:
  a frame drawn bit by bit).
"""

__all__: list[str] = []
