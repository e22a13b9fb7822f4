"""One page per ``python -m wslab`` command, written from the command's own argparse parser.

Design note
-----------
Each command registers ``(module, help)`` in ``wslab.__main__.COMMANDS`` and its module has a
``main(argv)`` that builds its parser and parses. To read the parser without running the command,
:func:`parser_of` calls ``main(["--help"])`` with ``ArgumentParser.parse_args`` and
``parse_known_args`` patched to hand back the parser and stop: nothing is started, nothing is
printed, and a command added to ``COMMANDS`` gets its page with no change here.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from unittest import mock

from .files import sync_pages

__all__ = ["parser_of", "command_page", "write_pages"]


class _Caught(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


def parser_of(command: str) -> argparse.ArgumentParser:
    """The argparse parser of ``python -m wslab <command>``."""
    from wslab.__main__ import COMMANDS

    module = importlib.import_module(COMMANDS[command][0])

    def catch(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Caught(self)

    with mock.patch.object(argparse.ArgumentParser, "parse_args", catch), \
            mock.patch.object(argparse.ArgumentParser, "parse_known_args", catch):
        try:
            module.main(["--help"])
        except _Caught as caught:
            return caught.parser
    raise RuntimeError(f"python -m wslab {command}: main() returned without parsing its arguments")


def _md(text: str) -> str:
    """Help text as markdown: argparse's %(default)s already filled, pipes escaped for tables."""
    return " ".join(text.split()).replace("|", "\\|")


def _row(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest}`"
    if action.option_strings and action.nargs != 0:
        metavar = parser._get_formatter()._format_args(action, action.dest.upper())  # noqa: SLF001
        names += f" `{metavar}`"
    help_text = action.help or ""
    if "%(" in help_text:
        help_text = help_text % {**vars(action), "prog": parser.prog}
    extra = []
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
        extra.append("one of " + ", ".join(f"`{c}`" for c in action.choices))
    if (action.default not in (None, False, argparse.SUPPRESS) and action.option_strings
            and "default" not in help_text.lower()):
        extra.append(f"default `{action.default}`")
    return f"| {names} | {_md(help_text)}{' (' + '; '.join(extra) + ')' if extra else ''} |"


def command_page(command: str) -> str:
    """The markdown page of one command: what it does, its usage, every argument, its full --help."""
    from wslab.__main__ import COMMANDS

    parser = parser_of(command)
    parser.prog = f"python -m wslab {command}"
    module, one_line = COMMANDS[command]
    rows = [_row(parser, a) for a in parser._actions if a.help != argparse.SUPPRESS]  # noqa: SLF001
    lines = [
        f"# `python -m wslab {command}`",
        "",
        f"{one_line[0].upper()}{one_line[1:]}.",
        "",
        "```text",
        parser.format_usage().strip(),
        "```",
        "",
    ]
    if parser.description:
        lines += [parser.description.strip(), ""]
    lines += ["## Arguments", "", "| argument | what it does |", "|---|---|", *rows, ""]
    if parser.epilog:
        lines += ["## Notes", "", "```text", parser.epilog.strip(), "```", ""]
    lines += [
        "## The whole `--help`",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
        "",
        f"Generated at build time from the parser in {{py:mod}}`{module}` "
        f"(`python -m wslab {command} --help` prints the same).",
        "",
    ]
    return "\n".join(lines)


def write_pages(outdir: Path) -> list[str]:
    """Write ``<command>.md`` for every command into ``outdir``; return the commands."""
    from wslab.__main__ import COMMANDS

    sync_pages(outdir, {f"{command}.md": command_page(command) for command in sorted(COMMANDS)})
    return sorted(COMMANDS)
