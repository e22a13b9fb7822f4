"""The public names are what the docs say (cf. websockets tests/test_exports.py)."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import wslab

ROOT = Path(__file__).resolve().parent.parent


def public_modules():
    for info in pkgutil.iter_modules(wslab.__path__):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"wslab.{info.name}")


def test_every_module_declares_all_and_its_names_exist():
    for module in public_modules():
        assert hasattr(module, "__all__"), f"{module.__name__} has no __all__"
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.__all__ names missing {name}"


def test_package_exports_exist_and_are_unique():
    assert len(wslab.__all__) == len(set(wslab.__all__))
    for name in wslab.__all__:
        assert hasattr(wslab, name), name


def test_every_package_export_is_documented_in_the_reference():
    reference = (ROOT / "docs" / "reference.md").read_text()
    documented = set(re.findall(r"\bwslab\.([A-Za-z_]\w*)", reference))
    missing = [name for name in wslab.__all__ if name not in documented]
    assert missing == [], f"docs/reference.md does not mention: {missing}"
