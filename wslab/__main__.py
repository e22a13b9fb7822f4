"""Command line: ``python -m wslab <command>``.

Commands live in the module that owns them; each registers a ``main(argv)``.
"""

from __future__ import annotations

import importlib
import sys

from .course.i18n import N_, ArgumentParser
from .course.i18n import gettext as _

#: command -> (module with a main(argv) function, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "battery": ("wslab.battery", N_("run the protocol battery against a WebSocket echo server url")),
    "exercises": ("wslab.course.exercises", N_("rebuild notebooks/ from instructor/source, or make class copies")),
    "bench": ("wslab.lab.bench", N_("measure push against polling; write results.json and PNG figures (--quick)")),
    "classroom": ("wslab.classroom.cli", N_("start the class chat room (loopback unless --listen-on-network)")),
    "lessons": ("wslab.course.lessons", N_("write the lesson notebooks into a folder of your own (DIR, default wslab-lessons)")),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = ArgumentParser(prog="python -m wslab", description=_("wslab lab kit"))
    parser.add_argument("command", choices=sorted(COMMANDS), help="; ".join(
        f"{name}: {_(text)}" for name, (_module, text) in sorted(COMMANDS.items())))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    args, rest = parser.parse_known_args(argv[:1])
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
