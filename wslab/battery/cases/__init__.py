"""The battery's cases, in the order of RFC 6455's sections.

* :mod:`.handshake`: section 4, the opening handshake;
* :mod:`.framing`: sections 5.1-5.4 and 6.2, frames, masking, fragments,
  and the server's own frames;
* :mod:`.control`: section 5.5 and 7.4, ping, pong, close, close codes;
* :mod:`.payload`: sections 5.6, 8.1 and 10.4, UTF-8 and size limits.
"""

from __future__ import annotations

from ..case import Case
from . import control, framing, handshake, payload

__all__ = ["CASES", "by_name"]

#: The battery, in order. Each case gets a fresh connection.
CASES: list[Case] = [*handshake.CASES, *framing.CASES, *control.CASES, *payload.CASES]

assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"


def by_name(names: list[str] | tuple[str, ...] | None) -> list[Case]:
    """The cases called ``names`` (all of them for ``None``), in battery order."""
    if names is None:
        return list(CASES)
    known = {c.name for c in CASES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"no case named {unknown}; the cases are {[c.name for c in CASES]}")
    return [c for c in CASES if c.name in names]
