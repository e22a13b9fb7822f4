"""The public names are what the docs say (cf. websockets tests/test_exports.py)."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import wslab

ROOT = Path(__file__).resolve().parent.parent


def public_modules():
    for info in pkgutil.walk_packages(wslab.__path__, "wslab."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            yield importlib.import_module(info.name)


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


def test_import_wslab_loads_no_submodule_and_no_heavy_library_until_a_name_is_used():
    """`import wslab` costs about what `import websockets` does (benchmarks/bench_import.py times it).

    What it loads is checked here (robust on any machine): nothing of wslab but the package, and none
    of asyncio, websockets, ssl, tornado, httpx, matplotlib or numpy, until a name is used.
    """
    heavy = ("asyncio", "websockets", "ssl", "tornado", "httpx", "matplotlib", "numpy")
    code = (
        "import sys, wslab\n"
        f"heavy = {heavy!r}\n"
        "loaded = lambda: sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('wslab.'))\n"
        "print(loaded())\n"
        "wslab.serve, wslab.display.Table\n"
        "print('wslab.server.background' in sys.modules, 'wslab.course.display' in sys.modules, 'tornado' in sys.modules)\n"
    )
    assert _fresh_python(code).splitlines() == ["[]", "True True False"]


def test_a_name_that_is_not_there_is_an_attribute_error_naming_it():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'"):
        wslab.no_such_thing  # noqa: B018


def test_a_public_function_keeps_its_name_when_its_submodule_is_imported_first():
    """``wslab.wiretap`` and ``wslab.environment`` are functions named like their modules
    (``wslab/lab/wiretap.py``, ``wslab/course/environment.py``): importing the module (``wslab.sidechannel``
    imports the wiretap's) must not rebind the package's name to it (lesson 07 called
    ``wslab.wiretap(...)`` and once got "'module' object is not callable")."""
    code = (
        "import types, wslab\n"
        "from wslab import sidechannel\n"  # imports the wiretap submodule before anyone asked for wslab.wiretap
        "import wslab.course.environment, wslab.lab.wiretap\n"
        "print(isinstance(wslab.wiretap, types.FunctionType), isinstance(wslab.environment, types.FunctionType))\n"
        "import sys; print(wslab.wiretap is sys.modules['wslab.lab.wiretap'].wiretap)\n"
    )
    assert _fresh_python(code).split() == ["True", "True", "True"]


def _fresh_python(code: str) -> str:
    """What ``code`` prints in a fresh interpreter that imports this checkout's wslab."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return done.stdout


#: The short module names lessons and docs use (``wslab.frames.encode``, ``wslab.tls``, ``wslab.broker``):
#: every module of the flat package that existed before the concept folders (issue 18), still reachable.
SHORT_NAMES = (
    "auth bench broker browser bufferdemo capture chat chat_client checks childproc display drain environment "
    "events exercises experiment fanout frame_codec frame_drawing frame_reader frames handlers handshake "
    "http_head labhttp labpush labserver lessons limits link plots proxy ratelimit reconnect redisserver "
    "roomlog roomprocs safewrite scaling scratch servers sidechannel stream_server timeline tls transports wiretap"
).split()


def test_every_short_module_name_still_reaches_its_module_in_its_folder():
    import types

    for name in SHORT_NAMES:
        if name in ("environment", "wiretap"):  # public functions named like their modules
            assert callable(getattr(wslab, name)), name
            continue
        module = getattr(wslab, name)
        assert isinstance(module, types.ModuleType), name
        folder, _, leaf = module.__name__.removeprefix("wslab.").rpartition(".")
        assert folder in FOLDERS or module.__name__ == "wslab.lab.experiment", module.__name__
        assert leaf == name or (name, leaf) == ("servers", "background"), module.__name__


#: The concept folders of ARCHITECTURE.md; no module lives in wslab/ itself but the package's front door.
FOLDERS = ("course", "protocol", "server", "lab", "classroom", "production", "battery")


def test_the_package_is_its_concept_folders_and_nothing_else():
    top = sorted(p.name for p in (ROOT / "wslab").iterdir() if not p.name.startswith((".", "__pycache__")))
    expected = sorted(FOLDERS + ("__init__.py", "__main__.py"))
    assert [n for n in top if n != "_lessons"] == expected
    for folder in FOLDERS:
        init = ROOT / "wslab" / folder / "__init__.py"
        assert init.is_file() and len(init.read_text().strip()) > 200, f"{folder}/__init__.py explains the folder"
