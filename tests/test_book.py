"""The built book (``python book/build.py``), opened page by page in a real browser.

Debian's Chromium, driven by Playwright, opens every page a person wrote in ``book/_build/html/``
(both editions; of the pages Sphinx generates from the code, one of each kind) served from
127.0.0.1: no console error, no request leaving this machine, every image loaded; on every page,
every internal link and anchor resolves, the search finds ``Sec-WebSocket-Accept``, and the lesson pages show
their figures, their measured note and their links to run them.

Without a built book these tests skip and say how to build it; with ``WSLAB_REQUIRE_BOOK=1`` (CI
builds the book first and sets it) they fail instead.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest

from .conftest import seconds

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "book" / "_build" / "html"
LESSONS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
#: The Chinese edition (book/_build/html/zh-CN/): the lessons translated so far, the translated pages.
ZH_HTML = HTML / "zh-CN"
CHINESE_LESSONS = sorted(p.stem for p in (ROOT / "notebooks" / "zh-CN").glob("*.ipynb"))
#: English page -> its Chinese page, both from the site's root.
COUNTERPARTS = {
    "book/index.html": "zh-CN/book/zh-CN/index.html",
    "README.html": "zh-CN/README.zh-CN.html",
    "instructor/GUIDE.html": "zh-CN/instructor/GUIDE.zh-CN.html",
    "instructor/CLASSROOM.html": "zh-CN/instructor/CLASSROOM.zh-CN.html",
    **{f"notebooks/{name}.html": f"zh-CN/notebooks/zh-CN/{name}.html" for name in CHINESE_LESSONS},
}
CJK = re.compile(r"[\u4e00-\u9fff]")

#: Outputs a page must not show: a traceback, a progress bar stuck at its first state (a tqdm
#: widget saved without its JavaScript), the repr of a matplotlib figure instead of the figure.
BAD_OUTPUTS = {
    "a traceback": re.compile(r"Traceback \(most recent call last\)"),
    "a stuck progress bar": re.compile(r"\b0%\|[^|]*\|\s*0/\d+"),
    "a figure's repr": re.compile(r"&lt;Figure size \d+x\d+ with \d+ Axes&gt;"),
}
#: Known bad outputs in the lessons themselves (reported; the notebooks are fixed elsewhere).
#: Lesson 00 shows, on purpose, how a server prints a handler's exception with its traceback.
#: What a page shows on purpose: lesson 00 says a handler's exception "is printed with its
#: traceback", and its page shows that traceback (checked: it must be there, and only there).
DELIBERATE = {
    ("notebooks/00-start-a-websocket-server-in-a-notebook.html", "a traceback"):
        "lesson 00's broken-handler demo: wslab.servers prints the handler's traceback, as the lesson says",
}


def need_book() -> None:
    if (HTML / "book" / "index.html").exists():
        return
    problem = "no built book in book/_build/html: run `python book/build.py` (needs requirements-book.txt)"
    if os.environ.get("WSLAB_REQUIRE_BOOK") == "1":
        pytest.fail(f"the book is required here (WSLAB_REQUIRE_BOOK=1): {problem}")
    pytest.skip(problem)


def pages() -> list[str]:
    """Every page of both editions, as paths relative to the site's root (theme templates and the
    redirects at the editions' roots left out: ``test_the_site_root_leads_to_the_book`` checks them)."""
    if not HTML.exists():
        return []
    return sorted(str(p.relative_to(HTML)) for p in HTML.rglob("*.html")
                  if "_static" not in p.relative_to(HTML).parts[:2] and p not in (HTML / "index.html", ZH_HTML / "index.html"))


class _Page(HTMLParser):
    """The language switch's link, and the text of each cell output, of one built page."""

    def __init__(self) -> None:
        super().__init__()
        self.switch: list[str] = []
        self.outputs: list[str] = []
        self.output_classes: list[str] = []
        self._depth = 0  # inside a cell output: the nesting depth of its <div>s

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag == "a" and "wslab-language-switch" in classes:
            self.switch.append(dict(attrs).get("href") or "")
        if tag == "div":
            if self._depth:
                self._depth += 1
                if "output" in classes:
                    self.output_classes.append(" ".join(classes))
            elif "cell_output" in classes:
                self._depth = 1
                self.outputs.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.outputs[-1] += data


def read_page(path: str) -> _Page:
    parser = _Page()
    parser.feed((HTML / path).read_text(encoding="utf-8"))
    return parser


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value or "")


@functools.lru_cache(maxsize=None)
def ids_of(path: Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8"))
    return frozenset(parser.ids)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site():
    """The built book served from 127.0.0.1 (port 0): its base URL."""
    need_book()
    handler = functools.partial(_Quiet, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(seconds(10))


@pytest.fixture(scope="module")
def browse(chromium, site):
    """open(path) -> (page, problems): the page loaded, and what went wrong while loading it."""
    context = chromium.new_context()
    outside: list[str] = []

    def keep_local(route) -> None:  # the book must work offline: nothing leaves 127.0.0.1
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", keep_local)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)

    def open_page(path: str):
        problems.clear()
        outside.clear()
        page.goto(site + path, wait_until="load", timeout=seconds(30) * 1000)
        # Lazy images load when scrolled to: ask for all of them now, then wait (bounded).
        page.evaluate("document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; })")
        page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=seconds(15) * 1000)
        return page, problems + [f"request leaving this machine: {u}" for u in outside]

    yield open_page
    context.close()


def test_the_book_has_every_lesson_the_readme_the_guides_and_the_references():
    need_book()
    found = set(pages())
    expected = {f"notebooks/{name}.html" for name in LESSONS} | {
        "book/index.html", "book/install.html", "README.html", "instructor/GUIDE.html",
        "instructor/CLASSROOM.html", "book/_generated/api/index.html", "book/commands.html",
        "book/_generated/commands/battery.html", "search.html",
    }
    assert expected <= found, f"missing pages: {sorted(expected - found)}"
    from wslab.__main__ import COMMANDS

    assert {f"book/_generated/commands/{c}.html" for c in COMMANDS} <= found


class _Links(HTMLParser):
    """Every link (``a href``) and image (``img src``) of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"a": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.links.append(value)


def test_every_internal_link_and_image_of_every_page_resolves():
    """Both editions, every page (the generated API and source pages too): files and anchors exist."""
    need_book()
    broken: list[str] = []
    for path in pages():
        parser = _Links()
        parser.feed((HTML / path).read_text(encoding="utf-8"))
        for link in parser.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc:
                continue  # another site (Binder, GitHub, an RFC): not ours to check offline
            target = (HTML / path).parent / unquote(parts.path) if parts.path else HTML / path
            target = target.resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_relative_to(HTML.resolve()) or not target.is_file():
                broken.append(f"{path}: link to a missing file: {link}")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in ids_of(target):
                broken.append(f"{path}: link to a missing anchor: {link}")
    assert broken == [], f"{len(broken)} problem(s):\n" + "\n".join(sorted(set(broken))[:400])


def written_pages() -> list[str]:
    """The pages a person wrote (lessons, guides, reference, both editions), and one page of each
    kind Sphinx generates from the code (an API page, a source page): those are alike by construction."""
    generated = ("book/_generated/api/", "_modules/")
    chosen = [p for p in pages() if not p.startswith(generated)]
    for prefix in generated:
        chosen += [p for p in pages() if p.startswith(prefix)][:1]
    return sorted(chosen)


@pytest.mark.browser
def test_every_written_page_loads_without_errors_and_with_every_image(browse):
    """One browser tab visits every page a person wrote, in both editions: no console error, no
    request leaving 127.0.0.1, every image loaded (links: the test above, on every page)."""
    need_book()
    broken: list[str] = []
    for path in written_pages():
        page, problems = browse(path)
        broken += [f"{path}: {p}" for p in problems]
        bad_images = page.evaluate(
            "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        broken += [f"{path}: image not loaded: {src}" for src in bad_images]
    assert broken == [], f"{len(broken)} problem(s):\n" + "\n".join(sorted(set(broken))[:400])


@pytest.mark.browser
def test_the_site_root_leads_to_the_book(chromium, site):
    """GitHub Pages serves index.html at the root: it must land on the book's first page."""
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(site)
        page.wait_for_url(site + "book/index.html", timeout=seconds(10) * 1000)
        assert "wslab" in page.title()
    finally:
        context.close()


def search(browse, path: str) -> list[str]:
    """The links the search page ``path`` (with its ?q=) lists, once it lists some; no problem loading it."""
    need_book()
    page, problems = browse(path)
    page.wait_for_selector("#search-results ul.search li", timeout=seconds(20) * 1000)
    results = page.locator("#search-results ul.search li a").evaluate_all("els => els.map(a => a.href)")
    assert problems == []
    return results


@pytest.mark.browser
def test_the_search_finds_sec_websocket_accept(browse):
    results = search(browse, "search.html?q=Sec-WebSocket-Accept")
    assert any("02-shake-hands-by-hand" in href for href in results), results


@pytest.mark.browser
def test_the_chinese_search_finds_the_chinese_guide(browse):
    """Sphinx's Chinese search runs (book/_static/wslab-zh-search.js) and stays in its edition."""
    results = search(browse, "zh-CN/search.html?q=nbgrader")
    assert any("instructor/GUIDE.zh-CN.html" in href for href in results), results
    assert all("/zh-CN/" in href for href in results), results
    # A Chinese word: jieba (requirements-book.txt) cut the pages into words.
    results = search(browse, "zh-CN/search.html?q=" + quote("评分"))
    assert any("instructor/GUIDE.zh-CN.html" in href for href in results), results


@pytest.mark.browser
@pytest.mark.parametrize("lesson", LESSONS)
def test_a_lesson_page_shows_its_figures_its_measured_note_and_how_to_run_it(browse, lesson):
    """A lesson that plots shows its figures; a live part shows its labelled screenshot."""
    need_book()
    page, problems = browse(f"notebooks/{lesson}.html")
    assert problems == []
    note = page.locator(".wslab-measured").inner_text()
    assert re.search(r"measured on \d{4}-\d\d-\d\d \d\d:\d\d UTC, on a .+ machine with \d+ CPUs, "
                     r"Python \d+\.\d+\.\d+, websockets \d+", note), note
    assert "quick mode" in note or "full mode" in note
    run_it = page.locator(".admonition", has_text="Run it yourself")
    assert run_it.locator("a", has_text="download the notebook").count() == 1
    assert run_it.locator("a", has_text="install the kit").count() == 1
    assert "Binder" in run_it.inner_text()
    figures = page.locator(".cell_output img")
    source = (ROOT / "notebooks" / f"{lesson}.ipynb").read_text(encoding="utf-8")
    if re.search(r"\bplot_?\w*\(|\.plots\.", source):
        assert figures.count() >= 1, f"{lesson} plots but its page shows no figure"
    for i in range(figures.count()):
        figure = figures.nth(i)
        figure.scroll_into_view_if_needed()
        assert figure.is_visible()
        box = figure.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 50, box
    live = page.locator(".wslab-live")
    for i in range(live.count()):
        assert "screenshot" in live.nth(i).inner_text().lower()
    # A live client left as such would only fail to connect in a static page.
    assert page.locator(".wslab-client, .wslab-buffered").count() == 0


@pytest.mark.parametrize("path", [f"notebooks/{name}.html" for name in LESSONS] + ["README.html"])
@pytest.mark.parametrize("bad", sorted(BAD_OUTPUTS))
def test_no_page_shows_a_traceback_a_stuck_progress_bar_or_a_figure_repr(path, bad):
    need_book()
    text = (HTML / path).read_text(encoding="utf-8")
    found = BAD_OUTPUTS[bad].search(text)
    if (path, bad) in DELIBERATE:
        assert found is not None, f"{path} no longer shows {bad}: {DELIBERATE[path, bad]}; update DELIBERATE"
        return
    assert found is None, f"{path} shows {bad}: ...{text[max(0, found.start() - 200):found.end() + 100]}..."


# The Chinese edition and the language switch


def test_the_chinese_edition_has_the_chinese_lessons_and_pages_in_chinese():
    need_book()
    found = set(pages())
    expected = set(COUNTERPARTS.values()) | {"zh-CN/book/zh-CN/install.html", "zh-CN/search.html"}
    assert expected <= found, f"missing pages: {sorted(expected - found)}"
    assert CHINESE_LESSONS, "no Chinese lesson in notebooks/zh-CN"
    search = (ZH_HTML / "search.html").read_text(encoding="utf-8")
    assert '<html lang="zh-CN"' in search and "搜索" in search  # Sphinx's own words, from its zh_CN catalog
    assert not any(p.startswith("zh-CN/notebooks/0") for p in found), "an English lesson in the Chinese edition"
    assert not any(p.startswith(("notebooks/zh-CN/", "zh-CN/zh-CN/")) for p in found), "a Chinese page in the English edition"


@pytest.mark.parametrize("lesson", CHINESE_LESSONS)
def test_a_chinese_lesson_page_has_its_outputs_no_error_and_chinese_self_check_feedback(lesson):
    """Executed by the Chinese build (WSLAB_LANG=zh_CN, quick mode): the checks answered in Chinese."""
    need_book()
    path = f"zh-CN/notebooks/zh-CN/{lesson}.html"
    page = read_page(path)
    english = read_page(f"notebooks/{lesson}.html")
    assert len(page.outputs) == len(english.outputs) > 1, "not every output of the English page is there"
    assert not [c for c in page.output_classes if "traceback" in c or "error" in c.split()], page.output_classes
    text = (HTML / path).read_text(encoding="utf-8")
    for bad, pattern in BAD_OUTPUTS.items():
        if (f"notebooks/{lesson}.html", bad) not in DELIBERATE:
            assert pattern.search(text) is None, f"{path} shows {bad}"
    assert "这些输出是怎么来的" in text and "本页的输出测于" in text
    feedback = [o for o in page.outputs if re.search(r"练习 \d+\.\d+|Exercise \d+\.\d+", o)]
    assert feedback, "no self-check feedback on the page"
    assert all(re.search(r"练习 \d+\.\d+", o) for o in feedback), feedback
    # (a stub's own `raise NotImplementedError("not done yet")` is code, English in both editions)
    assert not any(re.search(r"Exercise \d+\.\d+|(?<!NotImplementedError: )not done yet", o) for o in page.outputs)


def _switch(path: str) -> str:
    """The page the language switch of ``path`` links to, from the site's root."""
    [href] = read_page(path).switch
    target = (HTML / path).parent / unquote(urlsplit(href).path)
    assert target.resolve().is_file(), f"{path}: the language switch links a missing page: {href}"
    return target.resolve().relative_to(HTML.resolve()).as_posix()


def test_every_page_of_both_editions_has_a_language_switch_that_resolves():
    need_book()
    for path in pages():
        chinese = path.startswith("zh-CN/")
        target = _switch(path)
        assert target.startswith("zh-CN/") != chinese, f"{path}: the switch stays in its own edition: {target}"


@pytest.mark.parametrize("english", sorted(COUNTERPARTS))
def test_the_language_switch_links_the_same_page_both_ways(english):
    need_book()
    assert _switch(english) == COUNTERPARTS[english]
    assert _switch(COUNTERPARTS[english]) == english


def test_a_page_with_no_chinese_counterpart_switches_to_the_chinese_start_page():
    need_book()
    untranslated = [f"notebooks/{n}.html" for n in LESSONS if n not in CHINESE_LESSONS] + ["docs/limits.html"]
    for path in untranslated:
        assert _switch(path) == "zh-CN/book/zh-CN/index.html"


# The build's own pieces, without a built book (they need requirements-book.txt)


def _book_ext():
    pytest.importorskip("myst_nb", reason="the book's tools are missing: pip install -r requirements-book.txt")
    import sys

    path = str(ROOT / "book" / "_ext")
    if path not in sys.path:
        sys.path.insert(0, path)
    import wslab_book

    return wslab_book


@pytest.mark.parametrize("command", ["battery", "bench", "classroom", "exercises"])
def test_a_command_page_is_written_from_the_parser_without_running_the_command(command):
    """The page shows what --help prints; reading the parser starts nothing (no server, no run)."""
    commands = _book_ext().commands
    import wslab

    before = wslab.status()
    parser = commands.parser_of(command)
    parser.prog = f"python -m wslab {command}"
    page = commands.command_page(command)
    assert parser.format_help().rstrip() in page
    assert page.startswith(f"# `python -m wslab {command}`")
    assert str(wslab.status()) == str(before)


def test_a_lesson_gets_its_notes_in_memory_and_keeps_every_cell_of_its_own():
    """The committed notebook is not touched; its cells are all there, in order, after the notes."""
    import nbformat

    lessons = _book_ext().lessons
    path = ROOT / "notebooks" / f"{LESSONS[0]}.ipynb"
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(lessons.inject(text, path.name, "owner/name"), as_version=4)
    original = nbformat.reads(text, as_version=4)
    assert path.read_text(encoding="utf-8") == text
    title, _, rest = original.cells[0].source.partition("\n")
    assert nb.cells[0].source == title
    assert lessons.MEASURED_TAG in nb.cells[1].metadata["tags"]
    assert "https://mybinder.org/v2/gh/owner/name/HEAD?labpath=notebooks%2F" in nb.cells[2].source
    assert nb.cells[3].source == rest.strip("\n")
    assert [c.source for c in nb.cells[4:]] == [c.source for c in original.cells[1:]]


def test_every_kind_of_live_output_is_recognised_and_plain_html_is_not():
    lessons = _book_ext().lessons
    from wslab.classroom.browser import client_html
    from wslab.classroom.bufferdemo import demo_html

    text = {"port": 1, "direct_url": "ws://127.0.0.1:1/"}
    assert lessons.live_kind(client_html(text, title="messages from the kernel")) == "push"
    assert lessons.live_kind(client_html({**text, "format": "chat"}, title="the chat room")) == "chat"
    assert lessons.live_kind(client_html(text, title="scratch: from the browser")) == "echo"
    assert lessons.live_kind(demo_html(text)) == "buffered"
    assert lessons.live_kind("<table><tr><td>WebSocket</td></tr></table>") is None
