"""The Chinese edition: catalogs kept in step with the English, lessons built from them, messages.

The English learner copies in notebooks/ are the source; translations/zh_CN/*.po hold the
lessons' prose, wslab/course/locale/zh_CN/LC_MESSAGES/wslab.po the package's messages
(wslab.course.translation, wslab.course.i18n). Babel reads the catalogs here as Poedit or
Weblate would; no kernel runs (tests/test_notebooks.py-style runs of notebooks/zh-CN are left to CI).
"""

from __future__ import annotations

import os
import re
from collections import Counter
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from babel.messages.pofile import read_po, write_po

import wslab
from wslab.course.checks import CheckFailed
from wslab.course import i18n, pages, translation
from wslab.course.safewrite import LearnerWorkError

ROOT = Path(__file__).resolve().parent.parent
ZH = ROOT / "notebooks" / "zh-CN"
CHINESE_LESSONS = sorted(ZH.glob("*.ipynb"))
LESSON_00 = "00-start-a-websocket-server-in-a-notebook"
MESSAGES = translation.messages_path(ROOT, "zh_CN")
CJK = re.compile(r"[\u4e00-\u9fff]")
#: English page -> its Chinese page (README.md -> README.zh-CN.md), built from translations/zh_CN/<stem>.po.
PAGES = {page: translation.page_name(page, "zh_CN") for page in translation.PAGES}
PAGE_STEMS = {Path(page).stem for page in PAGES}


def _catalog(path: Path):
    with path.open("rb") as fh:
        return read_po(fh, locale="zh_CN")


def _write_catalog(path: Path, catalog) -> None:
    with path.open("wb") as fh:
        write_po(fh, catalog, include_previous=True)


def _translated(path: Path):
    return [m for m in _catalog(path) if m.id and m.string and not m.fuzzy]


def _copy_of_repository(tmp_path: Path, *, lessons: list[str] | None = None, package: bool = True) -> Path:
    """The parts update() and build() read, copied under tmp_path (lessons: just those stems)."""
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        if lessons is None or path.stem in lessons:
            shutil.copy(path, root / "notebooks" / path.name)
    shutil.copytree(ROOT / "translations", root / "translations")
    if lessons is not None:
        for po in (root / "translations" / "zh_CN").glob("*.po"):
            if po.stem not in lessons and po.stem not in PAGE_STEMS:
                po.unlink()
    if package:
        shutil.copytree(ROOT / "wslab", root / "wslab", ignore=shutil.ignore_patterns("__pycache__", "_lessons"))
    for page in [*PAGES, *PAGES.values()]:  # the pages and their translations (the lessons link them)
        if (ROOT / page).exists():
            (root / page).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / page, root / page)
    return root


def test_there_is_a_chinese_lesson():
    assert LESSON_00 in [p.stem for p in CHINESE_LESSONS]


@pytest.mark.parametrize("chinese", CHINESE_LESSONS, ids=lambda p: p.stem)
def test_a_chinese_lesson_has_the_english_code_cells_byte_for_byte_and_the_same_cell_ids(chinese):
    english = nbformat.read(ROOT / "notebooks" / chinese.name, as_version=4)
    translated = nbformat.read(chinese, as_version=4)
    assert [(c.cell_type, c.id) for c in translated.cells] == [(c.cell_type, c.id) for c in english.cells]
    for mine, theirs in zip(translated.cells, english.cells):
        if theirs.cell_type == "code":
            assert mine.source == theirs.source, f"code cell {theirs.id} differs"
            assert mine.outputs == [] and mine.execution_count is None
    assert CJK.search("".join(c.source for c in translated.cells if c.cell_type == "markdown"))


@pytest.mark.parametrize("chinese", CHINESE_LESSONS, ids=lambda p: p.stem)
def test_a_built_chinese_lesson_has_no_untranslated_or_fuzzy_entry(chinese):
    report = {c.name: c for c in translation.check("zh_CN", root=ROOT).catalogs}[chinese.stem]
    assert report.total > 0
    assert report.untranslated == [] and report.fuzzy == []


@pytest.mark.parametrize("chinese", CHINESE_LESSONS, ids=lambda p: p.stem)
def test_every_relative_link_of_a_chinese_lesson_resolves_from_its_folder(chinese):
    nb = nbformat.read(chinese, as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    targets = re.findall(r"\]\(([^)\s#]+)", text) + re.findall(r'(?:href|src)="([^"#]+)"', text)
    relative = [t for t in targets if not re.match(r"^[a-z]+:", t)]
    assert relative
    for target in relative:
        assert (chinese.parent / target).exists(), f"{chinese.name}: {target} does not resolve"
        if target.endswith("README.md"):
            pytest.fail(f"{chinese.name} links the English README: {target}")


def test_catalogs_and_chinese_lessons_are_what_update_and_build_make_from_todays_english(tmp_path):
    """Nothing is stale: merging today's English changes no catalog, building rewrites no lesson."""
    root = _copy_of_repository(tmp_path)
    assert translation.update("zh_CN", root=root) == []
    built = translation.build("zh_CN", root=root)
    assert sorted(p.name for p in built) == [p.name for p in CHINESE_LESSONS]
    for path in built:
        assert path.read_bytes() == (ZH / path.name).read_bytes(), f"notebooks/zh-CN/{path.name} is stale"


def test_a_changed_english_paragraph_makes_its_entry_fuzzy_and_a_removed_one_obsolete(tmp_path):
    root = _copy_of_repository(tmp_path, lessons=[LESSON_00], package=False)
    english = root / "notebooks" / f"{LESSON_00}.ipynb"
    nb = nbformat.read(english, as_version=4)
    old = "**Time:** about 20 minutes."
    removed = "`asyncio.run()` fails the same way, for the same reason:"
    assert old in nb.cells[0].source and nb.cells[7].source == removed
    before = _catalog(translation.catalog_path(root, "zh_CN", LESSON_00)).get(old).string
    nb.cells[0].source = nb.cells[0].source.replace(old, "**Time:** about 25 minutes.")
    nb.cells[7].source = "Something else entirely, with other words in it."
    nbformat.write(nb, english)

    assert translation.update("zh_CN", root=root) == [translation.catalog_path(root, "zh_CN", LESSON_00)]
    catalog = _catalog(translation.catalog_path(root, "zh_CN", LESSON_00))
    changed = catalog.get("**Time:** about 25 minutes.")
    assert changed.fuzzy and changed.string == before  # kept, to be reviewed
    text = translation.catalog_path(root, "zh_CN", LESSON_00).read_text(encoding="utf-8")
    assert f'#| msgid "{old}"' in text  # the English it was made for, for the reviewer (Poedit shows it)
    assert removed in catalog.obsolete
    report = {c.name: c for c in translation.check("zh_CN", root=root).catalogs}[LESSON_00]
    assert [e.split(": ", 1)[1] for e in report.fuzzy] == ["**Time:** about 25 minutes."]
    assert len(report.untranslated) == 1 and report.obsolete == [removed]
    with pytest.raises(translation.TranslationIncomplete, match="fuzzy"):
        translation.build("zh_CN", root=root)


def test_build_refuses_untranslated_entries_names_them_and_writes_nothing(tmp_path):
    root = _copy_of_repository(tmp_path, lessons=[LESSON_00], package=False)
    po = translation.catalog_path(root, "zh_CN", LESSON_00)
    catalog = _catalog(po)
    catalog.get("## Clean up").string = ""
    _write_catalog(po, catalog)
    with pytest.raises(translation.TranslationIncomplete) as caught:
        translation.build("zh_CN", root=root)
    assert caught.value.entries == [(LESSON_00, "untranslated", "cell c40 block 1", "## Clean up")]
    assert "cell c40 block 1" in str(caught.value) and "'## Clean up'" in str(caught.value)
    assert not (root / "notebooks" / "zh-CN").exists()

    [draft] = translation.build("zh_CN", root=root, partial=True)  # a translator's draft
    cells = {c.id: c.source for c in nbformat.read(draft, as_version=4).cells}
    assert cells["c40"].startswith("## Clean up\n\n停止")


def test_build_never_overwrites_a_chinese_lesson_a_learner_changed(tmp_path):
    root = _copy_of_repository(tmp_path, lessons=[LESSON_00], package=False)
    [path] = translation.build("zh_CN", root=root)
    path.write_text(path.read_text(encoding="utf-8").replace("NotImplementedError", "print()"), encoding="utf-8")
    with pytest.raises(LearnerWorkError):
        translation.build("zh_CN", root=root)
    assert "print()" in path.read_text(encoding="utf-8")


def test_markdown_is_cut_into_paragraphs_headings_and_tables_and_joins_back():
    source = "## Title\nOne line.\nTwo lines.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\n# code\n\nx = 1\n```\n\n</details>\n"
    pieces = translation.split_blocks(source)
    assert "".join(text for _, text in pieces) == source
    assert [(k, t) for k, t in pieces if k != "space"] == [
        ("unit", "## Title"), ("unit", "One line.\nTwo lines."), ("unit", "| a | b |\n|---|---|\n| 1 | 2 |"),
        ("code", "```python\n# code\n\nx = 1\n```"), ("keep", "</details>"),
    ]


# -- terminology ----------------------------------------------------------------------------

def _glossary() -> list[tuple[str, str]]:
    rows = []
    for line in (ROOT / "translations" / "zh_CN" / "GLOSSARY.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 2 and cells[0] not in ("English", "---"):
            rows.append((cells[0], cells[0] if cells[1] == "keep in English" else cells[1]))
    return rows


def _prose(text: str) -> str:
    """``text`` without code spans, fenced code, link targets, urls, HTML tags and placeholders."""
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    return re.sub(r"`[^`]*`|\]\([^)]*\)|<[^>]+>|\w+://\S+|\{\w*\}|%\(\w+\)s", " ", text)


def _entries():
    catalogs = [*sorted((ROOT / "translations" / "zh_CN").glob("*.po")), MESSAGES]
    return [(po.stem, m) for po in catalogs for m in _translated(po)]


def _glossary_misses(msgid: str, msgstr: str) -> list[str]:
    misses = []
    for english, chinese in _glossary():
        kept = english == chinese
        pattern = rf"(?<![\w-]){re.escape(english)}(?:s|es)?(?![\w-])"
        if re.search(pattern, _prose(msgid), 0 if kept else re.I) and chinese not in msgstr:
            misses.append(f"{english} -> {chinese}")
    return misses


def test_the_glossary_check_can_fail():
    assert _glossary_misses("The server sends a frame.", "服务器发送一个数据包。") == ["frame -> 帧"]
    assert _glossary_misses("A WebSocket handshake.", "一次 websocket 握手。") == ["WebSocket -> WebSocket"]
    assert _glossary_misses("Call `frame()` here.", "在这里调用 `frame()`。") == []


def test_every_translation_uses_the_glossary_terms():
    misses = [f"{stem}: {m.id[:60]!r}: {', '.join(found)}"
              for stem, m in _entries() if isinstance(m.id, str)
              for found in [_glossary_misses(m.id, m.string)] if found]
    assert misses == []


def test_rfc_quotes_stay_english_with_a_chinese_gloss():
    """A quoted block in English is kept word for word in the translation, and glossed in Chinese."""
    for stem, m in _entries():
        if isinstance(m.id, str) and m.id.startswith(">"):
            quoted = [line for line in m.id.splitlines() if line.startswith(">")]
            for line in quoted:
                assert line in m.string, f"{stem}: the RFC quote {line!r} is not kept in English"
            assert CJK.search(m.string.replace("\n".join(quoted), "")), f"{stem}: {m.id[:50]!r} has no gloss"


def test_translations_keep_link_targets_and_message_placeholders():
    for stem, m in _entries():
        if not isinstance(m.id, str):
            continue
        # Every link of the English is kept (a page's translation may add one: README.po links the glossary).
        missing = Counter(re.findall(r"\]\(([^)]*)\)", m.id)) - Counter(re.findall(r"\]\(([^)]*)\)", m.string))
        assert not missing, f"{stem}: {m.id[:50]!r} lost the link(s) {sorted(missing)}"
        if stem not in PAGE_STEMS:
            assert sorted(re.findall(r"\]\(([^)]*)\)", m.id)) == sorted(re.findall(r"\]\(([^)]*)\)", m.string)), stem
        if stem == "wslab":
            names = re.compile(r"\{\w*\}|%\(\w+\)s|%s")
            assert sorted(names.findall(m.id)) == sorted(names.findall(m.string)), m.id


# -- messages -------------------------------------------------------------------------------

def test_the_compiled_message_catalog_is_up_to_date_with_its_po():
    assert MESSAGES.with_suffix(".mo").read_bytes() == translation.compile_mo(MESSAGES)
    assert [m.id for m in _catalog(MESSAGES) if m.id and (not m.string or m.fuzzy)] == []


@pytest.fixture
def english_environment(monkeypatch, tmp_path):
    """No language chosen anywhere: no WSLAB_LANG, a C locale, a folder not named zh-CN."""
    for name in ("WSLAB_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _failure() -> str:
    with pytest.raises(CheckFailed) as caught:
        with wslab.exercise("0.2"):
            wslab.check_equal(None, "wslab-exercise/1.0", "user_agent()")
    return str(caught.value)


def test_self_check_feedback_is_english_by_default(english_environment):
    assert _failure() == "Exercise 0.2: user_agent() was None; expected 'wslab-exercise/1.0'"


def test_self_check_feedback_is_chinese_under_wslab_lang(english_environment, monkeypatch):
    monkeypatch.setenv("WSLAB_LANG", "zh_CN")
    assert _failure() == "练习 0.2：user_agent()：得到 None，应为 'wslab-exercise/1.0'"


def test_the_sentence_a_lessons_code_cell_gives_a_check_is_looked_up_too(english_environment, monkeypatch):
    """The code cell stays English (byte-identical); the catalog has its sentence (extracted by update)."""
    what = "user_agent() for a client that sent 'wslab-exercise/1.0'"
    assert f'wslab.check_equal(user_agent(seen[-1]), "wslab-exercise/1.0", "{what}")' in \
        (ZH / f"{LESSON_00}.ipynb").read_text(encoding="utf-8").replace('\\"', '"')
    monkeypatch.setenv("WSLAB_LANG", "zh_CN")
    with pytest.raises(CheckFailed) as caught:
        wslab.check_equal(None, "wslab-exercise/1.0", what)
    assert str(caught.value) == "客户端发送 'wslab-exercise/1.0' 时 user_agent() 的返回值：得到 None，应为 'wslab-exercise/1.0'"
    with pytest.raises(CheckFailed, match="^服务器 'ex-0-3' 还在运行"):
        wslab.check(False, "the server 'ex-0-3' is still running: stop it before returning")
    with pytest.raises(CheckFailed, match="^a sentence no catalog has$"):
        wslab.check(False, "a sentence no catalog has")


def test_self_check_feedback_is_chinese_in_a_kernel_started_in_a_zh_cn_lessons_folder(english_environment, monkeypatch, capsys):
    """A kernel starts in its notebook's folder: a lesson in notebooks/zh-CN/ answers in Chinese."""
    lessons = english_environment / "notebooks" / "zh-CN"
    lessons.mkdir(parents=True)
    monkeypatch.chdir(lessons)
    assert _failure().startswith("练习 0.2：")
    with wslab.exercise("0.1"):
        raise NotImplementedError("not done yet")
    assert capsys.readouterr().out.startswith("◻ 练习 0.1 还没完成")
    monkeypatch.setenv("WSLAB_LANG", "en")  # WSLAB_LANG wins over the folder
    assert _failure().startswith("Exercise 0.2: ")


def test_the_locale_selects_chinese_when_nothing_else_does(english_environment, monkeypatch):
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    assert i18n.language() == "zh_CN" and i18n.gettext("options") == "选项"
    monkeypatch.setenv("LANGUAGE", "en:zh_CN")
    assert i18n.language() is None and i18n.gettext("options") == "options"


def _help(*command: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("WSLAB_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES")}
    done = subprocess.run([sys.executable, "-m", "wslab", *command, "--help"], capture_output=True, text=True,
                          timeout=60, env={**clean, "LANG": "C.UTF-8", "PYTHONPATH": str(ROOT), **env}, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _battery_help(**env: str) -> str:
    return _help("battery", **env)


def test_battery_help_is_chinese_under_wslab_lang_and_english_by_default():
    chinese = _battery_help(WSLAB_LANG="zh_CN")
    assert chinese.startswith("用法：python -m wslab battery")
    assert "对一个 WebSocket 回显服务器运行 RFC 6455 协议测试集" in chinese and "显示帮助信息并退出" in chinese
    english = _battery_help()
    assert english.startswith("usage: python -m wslab battery") and not CJK.search(english)


def test_a_battery_argument_error_is_chinese_under_wslab_lang():
    done = subprocess.run([sys.executable, "-m", "wslab", "battery", "http://127.0.0.1:1/"], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "WSLAB_LANG": "zh_CN", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2
    assert "错误：测试集只支持明文 ws://，收到的是 'http://127.0.0.1:1/'" in done.stderr


def test_the_chinese_readme_keeps_every_command_of_the_english_one_and_its_links_resolve():
    english = (ROOT / "README.md").read_text(encoding="utf-8")
    chinese = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    blocks = re.compile(r"```bash\n(.*?)```", re.S)
    assert set(blocks.findall(english)) <= set(blocks.findall(chinese))
    for target in re.findall(r"\]\(([^)\s#]+)", chinese):
        if not re.match(r"^[a-z]+:", target):
            assert (ROOT / target).exists(), f"README.zh-CN.md: {target} does not resolve"


# -- the Markdown pages (README.md, the instructor pages) ------------------------------------

def _links(text: str) -> list[str]:
    """The relative link targets of markdown ``text`` (without their #fragment)."""
    targets = re.findall(r"\]\(([^)\s#]+)", text) + re.findall(r'(?:href|src)="([^"#]+)"', text)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def _code_blocks(text: str) -> list[str]:
    return [piece for kind, piece in translation.split_blocks(text) if kind == "code"]


def test_the_chinese_pages_are_what_update_and_build_make_from_todays_english(tmp_path):
    """Nothing is stale: merging today's English changes no page catalog; building makes the committed pages."""
    root = _copy_of_repository(tmp_path)
    shutil.copytree(ZH, root / "notebooks" / "zh-CN")
    assert pages.update("zh_CN", root=root) == []
    for chinese in PAGES.values():
        (root / chinese).unlink()
    built = pages.build("zh_CN", root=root)
    assert sorted(p.relative_to(root).as_posix() for p in built) == sorted(PAGES.values())
    for path in built:
        rel = path.relative_to(root).as_posix()
        assert path.read_bytes() == (ROOT / rel).read_bytes(), f"{rel} is stale: run python -m wslab exercises --translations"


@pytest.mark.parametrize("english", sorted(PAGES))
def test_a_chinese_page_is_complete_keeps_every_command_and_its_links_resolve_to_chinese_pages(english):
    report = {c.name: c for c in translation.check("zh_CN", root=ROOT).catalogs}[Path(english).stem]
    assert report.total > 0 and report.untranslated == [] and report.fuzzy == []
    source = (ROOT / english).read_text(encoding="utf-8")
    chinese_path = ROOT / PAGES[english]
    chinese = chinese_path.read_text(encoding="utf-8")
    assert CJK.search(chinese)
    assert _code_blocks(chinese) == _code_blocks(source), "the code blocks (the commands) differ from the English"
    targets = _links(chinese)
    assert len(targets) >= len(_links(source))
    english_pages = {ROOT / page for page in PAGES} | {p.resolve() for p in (ROOT / "notebooks").glob("*.ipynb")}
    switch = [t for t in targets if (chinese_path.parent / t).resolve() == (ROOT / english).resolve()]
    assert len(switch) <= 1, "only the language switch links this page's English"
    for target in targets:
        resolved = (chinese_path.parent / target).resolve()
        assert resolved.exists(), f"{PAGES[english]}: {target} does not resolve"
        counterpart = {ROOT / page: ROOT / zh for page, zh in PAGES.items()}.get(resolved) or \
            (ZH / resolved.name if resolved.parent == ROOT / "notebooks" else None)
        if resolved in english_pages and target not in switch and counterpart is not None and counterpart.exists():
            pytest.fail(f"{PAGES[english]} links the English {target}, which has a Chinese counterpart")


def test_the_language_switch_of_a_page_points_back_at_the_english_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "[简体中文](README.zh-CN.md)" in readme
    assert "[English](README.md) · 简体中文" in (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    assert pages.localize_links("[x](../notebooks/00-a.ipynb) [y](GUIDE.zh-CN.md) [z](../docs/limits.md#a)",
                                "instructor/GUIDE.md",
                                {"notebooks/00-a.ipynb": "notebooks/zh-CN/00-a.ipynb",
                                 "instructor/GUIDE.md": "instructor/GUIDE.zh-CN.md"}) == \
        "[x](../notebooks/zh-CN/00-a.ipynb) [y](GUIDE.md) [z](../docs/limits.md#a)"


def test_a_changed_english_paragraph_of_a_page_makes_it_fuzzy_and_the_page_is_not_built(tmp_path):
    root = _copy_of_repository(tmp_path, lessons=[LESSON_00], package=False)
    guide = root / "instructor" / "GUIDE.md"
    old = "## The class chat room"
    guide.write_text(guide.read_text(encoding="utf-8").replace(old, "## The class chat room, for everyone"),
                     encoding="utf-8")
    before = (root / "instructor" / "GUIDE.zh-CN.md").read_bytes()
    assert pages.update("zh_CN", root=root) == [pages.page_catalog(root, "zh_CN", "instructor/GUIDE.md")]
    catalog = _catalog(pages.page_catalog(root, "zh_CN", "instructor/GUIDE.md"))
    changed = catalog.get("## The class chat room, for everyone")
    assert changed.fuzzy and changed.string == "## 课堂聊天室"
    with pytest.raises(translation.TranslationIncomplete, match="GUIDE block 11 fuzzy"):
        pages.build("zh_CN", root=root)
    assert (root / "instructor" / "GUIDE.zh-CN.md").read_bytes() == before
    # This copy is no git checkout and wslab wrote none of its pages: a page there may hold someone's
    # hand edits, so the build refuses to write over it (like every command) and names it, until --force.
    with pytest.raises(LearnerWorkError, match="GUIDE.zh-CN.md"):
        pages.build("zh_CN", root=root, partial=True)
    assert (root / "instructor" / "GUIDE.zh-CN.md").read_bytes() == before
    pages.build("zh_CN", root=root, partial=True, force=True)  # a translator's draft: the English where it is missing
    assert "## The class chat room, for everyone" in (root / "instructor" / "GUIDE.zh-CN.md").read_text(encoding="utf-8")
    assert pages.build("zh_CN", root=root, partial=True) == []  # unchanged bytes are not written again


def test_only_the_catalog_tools_import_babel():
    """The package reads .mo files with the standard library; Babel stays a maintainer's tool."""
    import ast

    importers = []
    for path in sorted((ROOT / "wslab").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "babel" or n.startswith("babel.") for n in names):
                importers.append(path.relative_to(ROOT).as_posix())
    assert sorted(set(importers)) == ["wslab/course/translation.py"]


# -- the package's other messages: servers, the battery's report, commands, lessons' checks --

def test_a_port_in_use_error_is_chinese_under_wslab_lang_and_english_by_default(english_environment, monkeypatch):
    from wslab.server.background import PortInUseError, _check_host

    assert str(PortInUseError("127.0.0.1", 8765)).startswith("port 8765 on 127.0.0.1 is already in use")
    with pytest.raises(ValueError, match="^refusing to listen on '0.0.0.0'"):
        _check_host("0.0.0.0", False)
    monkeypatch.setenv("WSLAB_LANG", "zh_CN")
    assert str(PortInUseError("127.0.0.1", 8765)).startswith("127.0.0.1 上的端口 8765 已被其他程序占用")
    with pytest.raises(ValueError, match="^拒绝监听 '0.0.0.0'"):
        _check_host("0.0.0.0", False)


def test_the_battery_reports_summary_and_table_are_chinese_under_wslab_lang_and_json_keys_stay(english_environment,
                                                                                                monkeypatch):
    from wslab.battery.report import CaseResult, Report

    case = CaseResult("text echo", passed=False, expected="the same text back", happened="nothing came back",
                      rfc="5.6", quote="The payload data is text data encoded as UTF-8.")
    report = Report("ws://127.0.0.1:1/", [case])
    assert report.summary.startswith("0 of 1 MUSTs hold against ws://127.0.0.1:1/; 0 SHOULD note(s)")
    assert "MUST failures:" in str(report) and not CJK.search(str(report))
    english_json = report.to_json()
    monkeypatch.setenv("WSLAB_LANG", "zh_CN")
    assert report.summary.startswith("ws://127.0.0.1:1/：1 条 MUST 满足了 0 条；0 条 SHOULD 提醒")
    assert "不满足的 MUST：" in str(report) and "实际情况" in str(report)
    assert "文本回显" in str(report) and case.quote in str(report)  # a case's name is translated, RFC quotes stay
    assert report.to_json() == english_json  # machine-read: the same keys and values in every language
    with pytest.raises(CheckFailed, match="^1 条 MUST 中有 1 条不满足：文本回显（RFC 6455 第 5.6 节）"):
        report.assert_passed()


#: Cases whose every word is the same on every run against the same server (no timing, no byte counts).
STEADY_CASES = ["handshake with version 25 (unknown)", "text echo", "binary echo", "fragmented message",
                "reserved opcode 0x3", "close code echoed", "close code 1005", "server text is valid UTF-8"]


def _battery_run(**env: str):
    """Run the battery's steady cases against a websockets echo server; return the report."""
    import json

    from websockets.asyncio.server import serve

    from wslab.battery.runner import check_server

    from .conftest import run, seconds

    async def echo(connection):
        async for message in connection:
            await connection.send(message)

    async def main():
        async with serve(echo, "127.0.0.1", 0, max_size=2**20) as server:
            port = server.sockets[0].getsockname()[1]
            return await check_server(f"ws://127.0.0.1:{port}/", cases=STEADY_CASES, timeout=seconds(5))

    report = run(main(), timeout=60)
    document = json.loads(report.to_json())
    for case in document["cases"]:
        case["seconds"] = 0
    document["url"] = "ws://127.0.0.1:PORT/"
    return report, document


def test_the_battery_report_of_a_real_run_has_chinese_case_lines_and_the_same_json(english_environment,
                                                                                   monkeypatch):
    """What each case expected and what happened reads in Chinese; JSON and JUnit stay English (machine-read).

    RFC 6455 4.4: websockets answers version 25 with 400 and no Sec-WebSocket-Version, the one MUST it breaks.
    """
    english, english_json = _battery_run()
    english_text, english_junit = str(english), english.to_junit()
    assert english.failed == ["handshake with version 25 (unknown)"]
    assert str(english["text echo"]) == "✓ text echo: text message 'Hello, WebSocket ✓' came back"
    assert not CJK.search(english_text.replace("日本語 🎉", ""))  # the one Chinese word is a payload the case sends
    assert "✗ handshake with version 25 (unknown): HTTP 400 Bad Request with no Sec-WebSocket-Version header " \
           "naming the versions it speaks (expected an HTTP error (426 is usual) with" in str(english.results[0])

    monkeypatch.setenv("WSLAB_LANG", "zh_CN")
    chinese, chinese_json = _battery_run()
    assert chinese_json == english_json and chinese.failed == english.failed  # the run itself is language-free
    text = str(chinese)
    assert "✓ 文本回显：文本消息 'Hello, WebSocket ✓' 原样返回" == str(chinese["text echo"])
    assert "版本号为 25 的握手（未知版本）" in text and "没有用 Sec-WebSocket-Version 头列出它支持的版本" in text
    assert "预期：HTTP 错误（通常是 426）" in text
    assert "收到关闭帧（关闭码 1002，原因 'invalid opcode'），随后服务器关闭了 TCP 连接" in text  # the reason as sent
    assert "If the server doesn't support the requested version, it MUST respond" in text  # the RFC's words stay
    assert "text echo" not in text and "came back" not in text
    assert "文本回显" in chinese._repr_html_()  # a notebook shows the table
    junit = chinese.to_junit()
    assert junit.count("<testcase") == len(STEADY_CASES) and not CJK.search(junit.replace("日本語 🎉", ""))
    assert chinese["text echo"].happened == "text message 'Hello, WebSocket ✓' came back"  # the attribute: English

    monkeypatch.delenv("WSLAB_LANG")  # the same report, read again without WSLAB_LANG: English as before
    assert str(english) == english_text and english.to_junit() == english_junit
    assert str(chinese["text echo"]) == "✓ text echo: text message 'Hello, WebSocket ✓' came back"


def test_a_battery_run_against_nothing_says_so_in_chinese_and_its_json_stays_english(english_environment,
                                                                                      monkeypatch):
    """The runner's own words (nothing listens, not run) are kept English in the report, shown translated."""
    import socket

    from wslab.battery.runner import check_server

    from .conftest import run, seconds

    with socket.socket() as sock:  # a port nothing listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{sock.getsockname()[1]}/"
        monkeypatch.setenv("WSLAB_LANG", "zh_CN")
        report = run(check_server(url, cases=["text echo"], timeout=seconds(2)), timeout=30)
    assert report.error.startswith("nothing accepts connections at 127.0.0.1:")
    assert report.as_dict()["cases"][0]["happened"].startswith("not run: nothing accepts connections at")
    assert str(report).startswith(f"无法测试 {url}：127.0.0.1:") and "服务器在运行吗？" in str(report)


@pytest.mark.parametrize("command, chinese", [
    (("bench",), "在这台机器上测量 WebSocket 推送与 SSE、长轮询、短轮询和裸 TCP 的差别"),
    (("classroom",), "启动课堂聊天室"),
    (("exercises",), "生成课程 notebook 的学员版"),
    (("lessons",), "把课程 notebook 及其链接到的所有文件写到你自己的文件夹里"),
    ((), "wslab 实验套件"),
])
def test_every_commands_help_is_chinese_under_wslab_lang_and_english_by_default(command, chinese):
    shown = _help(*command, WSLAB_LANG="zh_CN")
    assert shown.startswith(f"用法：python -m wslab{' ' if command else ''}{' '.join(command)}") and chinese in shown
    assert "显示帮助信息并退出" in shown
    english = _help(*command)
    assert english.startswith("usage: python -m wslab") and not CJK.search(english)


def test_a_command_line_error_is_chinese_under_wslab_lang(tmp_path):
    env = {**os.environ, "WSLAB_LANG": "zh_CN", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "wslab", "classroom", "--port", "70000"], capture_output=True,
                          text=True, timeout=60, env=env, cwd=tmp_path)
    assert done.returncode == 2 and "! --port 必须在 0-65535 之间，收到的是 70000" in done.stderr
    done = subprocess.run([sys.executable, "-m", "wslab", "exercises", "--partial"], capture_output=True,
                          text=True, timeout=60, env=env, cwd=tmp_path)
    assert done.returncode == 2 and "错误：--partial 要和 --translations 一起用" in done.stderr


def test_a_classroom_notice_is_chinese_under_wslab_lang_and_english_by_default(english_environment, monkeypatch):
    from wslab.classroom.chat_client import _ws_url
    from wslab.production.outbox import Outbox

    outbox = Outbox(max_pending=1, max_pending_bytes=1)
    assert outbox.refusal(split=True) == ("0 messages already wait for Redis (the room is split): yours was not "
                                          "kept; send it again when the room is whole")
    with pytest.raises(ValueError, match="^not a room address: 'ftp://x'"):
        _ws_url("ftp://x", "ada")
    monkeypatch.setenv("WSLAB_LANG", "zh_CN")
    assert outbox.refusal(split=True).startswith("已有 0 条消息在等待 Redis（聊天室被分隔开了）")
    with pytest.raises(ValueError, match="^'ftp://x' 不是聊天室地址"):
        _ws_url("ftp://x", "ada")


def test_a_lesson_modules_check_failure_is_chinese_under_wslab_lang_and_english_by_default(english_environment,
                                                                                            monkeypatch):
    """The reconnection exercise's check (wslab.production.reconnect) judges the events follow() returned."""
    from wslab.production.reconnect import _check_events

    twice = [{"id": 1}, {"id": 1}]
    with pytest.raises(CheckFailed, match=r'^event 1 arrived twice \(at position 2\): resume with \{"last"'):
        _check_events(twice, 2)
    monkeypatch.setenv("WSLAB_LANG", "zh_CN")
    with pytest.raises(CheckFailed, match=r'^事件 1 收到了两次（在第 2 个位置）：重连后用 \{"last": <你见过的最后一个 id>\} 恢复'):
        _check_events(twice, 2)


def test_a_lessons_check_sentence_with_fields_is_looked_up_then_filled(english_environment, monkeypatch):
    """Lesson 08's code cell passes the sentence with {fields} and the values as keywords (no f-string)."""
    sentence = "a write buffer reached {peak:,} bytes; it should stay near the limit"
    assert f'"{sentence}", peak=peak)' in \
        (ROOT / "notebooks" / "08-keep-it-running.ipynb").read_text(encoding="utf-8").replace('\\"', '"')
    with pytest.raises(CheckFailed, match="^a write buffer reached 70,000 bytes"):
        wslab.check(False, sentence, peak=70_000)
    monkeypatch.setenv("WSLAB_LANG", "zh_CN")
    with pytest.raises(CheckFailed, match="^有一个写缓冲区涨到了 70,000 字节；它应该保持在上限附近$"):
        wslab.check(False, sentence, peak=70_000)


def test_a_table_with_chinese_words_lines_up_in_a_terminal():
    """A Chinese character takes two terminal columns: the text table pads by columns, not characters."""
    from wslab.course.display import Table, text_width

    table = str(Table(["用例", "level"], [["text echo", "MUST"], ["关闭码", "SHOULD"]]))
    header, rule, *rows = table.splitlines()
    assert text_width(header.split("level")[0]) == text_width(rows[0].split("MUST")[0]) == len(rule.split()[0]) + 2
    assert text_width(rows[1].split("SHOULD")[0]) == text_width(rows[0].split("MUST")[0])


def test_a_room_process_that_speaks_chinese_is_still_found_open(monkeypatch):
    """Lesson 08 in Chinese starts room processes whose banner is Chinese: the parent still reads its URL."""
    from wslab.production import roomprocs

    monkeypatch.setenv("WSLAB_LANG", "zh_CN")
    (room,) = roomprocs.room_processes(1, None, room="zh", name="zh-room")
    try:
        assert room.url.startswith("ws://127.0.0.1:"), room.url
        assert any("聊天室" in line for line in room.output), list(room.output)
    finally:
        roomprocs.stop_processes([room])
