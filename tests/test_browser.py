"""The browser client, in a real browser (Debian's Chromium via Playwright) and in JupyterLab.

Without Chromium these tests skip and say how to get it; with
``WSLAB_REQUIRE_BROWSER=1`` or ``CI=true`` they fail instead (``tests/conftest.py``: ``need_chromium``, fixture ``chromium``).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

import wslab
from wslab import browser as wb
from wslab.classroom.browser import client_html, html_page_responder, proxy_url, url_plan

from .conftest import ends_without, run, seconds, skips_unless_required

ROOT = Path(__file__).resolve().parent.parent
LESSON = "05-talk-to-the-browser-and-chat-with-the-class.ipynb"


def arun(coro, timeout: float = 10):
    """conftest's run() in a thread: Playwright's sync API keeps a loop running in this one."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run, coro, timeout).result()


def ms(value: float) -> float:
    """A Playwright timeout (milliseconds), scaled like every other timeout."""
    return seconds(value) * 1000


# The browser, or a clear reason why not


@pytest.fixture
def page(chromium):
    context = chromium.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    yield page
    context.close()


def log_text(page, root: str = ".wslab-client") -> str:
    return page.locator(f"{root} .wslab-log").inner_text()


def wait_for_line(page, text: str, root: str = ".wslab-client", timeout: float = 10) -> None:
    page.locator(f"{root} .wslab-log .wslab-line", has_text=text).first.wait_for(timeout=ms(timeout))


def join_chat(page, url: str, nick: str) -> None:
    page.goto(url)
    page.fill(".wslab-input", nick)
    page.press(".wslab-input", "Enter")
    page.wait_for_selector('.wslab-client[data-state="connected"]', timeout=ms(10))


def say(page, text: str) -> None:
    page.fill(".wslab-input", text)
    page.press(".wslab-input", "Enter")


@skips_unless_required("WSLAB_REQUIRE_BROWSER", otherwise="error")  # the page fixture fails: an error
def test_without_chromium_browser_tests_skip_with_how_to_get_it_unless_required(required, outcome):
    report = ends_without(f"{__file__}::test_two_pages_in_the_chat_room_see_each_others_messages",
                          "WSLAB_REQUIRE_BROWSER", required, outcome, WSLAB_CHROMIUM="/nonexistent/chromium")
    assert "apt-get install chromium" in report


# Pages served by wslab on 127.0.0.1


def test_page_served_by_the_kernel_receives_pushes_and_sends_one_back(page):
    chan = wslab.push_channel_in_thread(name="b-push")
    page.goto(chan.page_url)
    page.wait_for_selector('.wslab-client[data-state="connected"]', timeout=ms(10))
    wait_for_line(page, "< hello from the kernel")
    assert chan.push("pushed <b>from</b> python") == 1
    wait_for_line(page, "< pushed <b>from</b> python")
    say(page, "sent from the page")

    assert arun(chan.next_message(timeout=seconds(10))) == "sent from the page"
    assert page.locator(".wslab-log b").count() == 0  # shown as text, not HTML
    chan.stop()  # the server goes away: the page shows the close code
    wait_for_line(page, "= closed: code 1001")
    assert page.get_attribute(".wslab-client", "data-state") == "closed"
    assert page.errors == []


def test_two_pages_in_the_chat_room_see_each_others_messages(chromium):
    room = wslab.chat_room_in_thread(name="b-chat")
    ada, bob = chromium.new_page(), chromium.new_page()
    try:
        join_chat(ada, room.page_url, "ada")
        join_chat(bob, room.page_url, "bob")
        wait_for_line(ada, "= bob joined")
        say(ada, "hello bob")
        wait_for_line(bob, "< ada: hello bob")
        say(bob, "hello ada")
        wait_for_line(ada, "< bob: hello ada")
        assert room.members == ["ada", "bob"]
    finally:
        ada.close()
        bob.close()


def test_a_chat_message_with_markup_renders_as_text_and_its_script_does_not_run(chromium):
    room = wslab.chat_room_in_thread(name="b-xss")
    attacker, victim = chromium.new_page(), chromium.new_page()
    attack = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script><b>bold</b>'
    try:
        join_chat(victim, room.page_url, "victim")
        join_chat(attacker, room.page_url, "mallory")
        say(attacker, attack)
        wait_for_line(victim, "< mallory: <img src=x")
        line = victim.locator(".wslab-line", has_text="mallory: <img").first.inner_text()
        assert line == f"< mallory: {attack}"
        assert victim.evaluate("window.pwned") is None
        assert victim.locator(".wslab-log img, .wslab-log script, .wslab-log b").count() == 0
    finally:
        attacker.close()
        victim.close()


def test_a_newcomer_page_sees_the_rooms_history(chromium):
    room = wslab.chat_room_in_thread(name="b-history", history=5)
    room.say("said before you came")
    late = chromium.new_page()
    try:
        join_chat(late, room.page_url, "late")
        wait_for_line(late, "* (earlier) [instructor] teacher: said before you came")
    finally:
        late.close()


def serve_fragment(fragment: str, head: str = "") -> wslab.Server:
    """A page holding ``fragment``, served from 127.0.0.1 by a wslab server of its own."""

    async def nothing(connection):
        await connection.close()

    page = f"<!doctype html><html><head>{head}</head><body>{fragment}</body></html>"
    return wslab.serve_in_thread(nothing, name="b-host", process_request=html_page_responder(page))


def test_notebook_client_goes_straight_to_127_0_0_1_from_a_local_page(page):
    target = wslab.push_channel_in_thread(name="b-target")
    host = serve_fragment(wb.browser_client(target.server).data)
    page.goto(host.url.replace("ws://", "http://"))
    wait_for_line(page, "< hello from the kernel")
    line = page.locator(".wslab-line", has_text="connecting to").first.inner_text()
    assert f"ws://127.0.0.1:{target.server.port}/" in line and "straight to the kernel" in line
    page.click(".wslab-close")
    wait_for_line(page, "= closed: code 1000 closed from the page")


def test_notebook_client_talks_to_the_from_scratch_server_of_lesson_06(page):
    """Any registered server works; an echo server does not greet, so "connected" waits for a reply."""

    async def start():
        return await wslab.serve_scratch()

    # The from-scratch server lives on a loop: give it one in a thread.
    from wslab.server.background import LoopThread

    runner = LoopThread("b-scratch")
    try:
        scratch = runner.run(start())
        host = serve_fragment(wb.browser_client(scratch).data)
        page.goto(host.url.replace("ws://", "http://"))
        wait_for_line(page, "= open (not proven yet")
        assert page.get_attribute(".wslab-client", "data-state") == "open"
        say(page, "hello scratch")
        wait_for_line(page, "= connected: the server spoke first")
        wait_for_line(page, "< ")
        assert "hello scratch" in page.locator(".wslab-line", has_text="< ").first.inner_text()
        runner.run(scratch.aclose())
    finally:
        runner.stop()


def test_notebook_client_builds_the_proxy_url_from_the_pages_base_url(page):
    """JupyterHub: the kernel says prefer the proxy; the page says its base URL."""
    config = {**url_plan(41234), "prefer_proxy": True, "proxy_available": True}
    head = '<script id="jupyter-config-data" type="application/json">{"baseUrl": "/user/ada/"}</script>'
    host = serve_fragment(client_html(config), head)
    page_url = host.url.replace("ws://", "http://") + "?token=must-not-leak"
    page.goto(page_url)
    wait_for_line(page, "connecting to")
    expected = f"ws://127.0.0.1:{host.port}/user/ada/proxy/41234/"
    assert f"connecting to {expected} (through jupyter-server-proxy)" in log_text(page)
    # Nothing serves that path here: the client says the server never spoke.
    wait_for_line(page, "the server never spoke")
    assert "must-not-leak" not in log_text(page)


def test_notebook_client_explains_when_no_route_can_work(page):
    config = {**url_plan(41234), "prefer_proxy": True, "proxy_available": False}
    host = serve_fragment(client_html(config))
    page.goto(host.url.replace("ws://", "http://"))
    wait_for_line(page, "cannot reach the kernel's server")
    assert "jupyter-server-proxy is not installed" in log_text(page)
    assert page.get_attribute(".wslab-client", "data-state") == "error"


# The real thing: JupyterLab runs lesson 05 and its client shows the kernel's pushes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterProcess:
    """``python -m jupyter <app>`` on 127.0.0.1 with a token, stopped at the end."""

    def __init__(self, app: str, root_dir: Path, *extra: str) -> None:
        self.token = secrets.token_hex(16)
        self.port = free_port()
        runtime = root_dir.parent / "runtime"
        env = {
            **os.environ,
            "WSLAB_QUICK": "1",
            "JUPYTER_RUNTIME_DIR": str(runtime),
            "JUPYTER_CONFIG_DIR": str(root_dir.parent / "config"),
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        self.runtime = runtime
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "jupyter", app, "--no-browser",
                f"--ServerApp.token={self.token}", f"--ServerApp.port={self.port}",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={root_dir}",
                "--ServerApp.port_retries=0", *extra,
                *(["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []),
            ],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def wait_ready(self, timeout: float = 60) -> None:
        seen = []
        for _ in range(10_000):
            line = self.lines.get(timeout=seconds(timeout))
            if line is None:
                raise AssertionError("jupyter exited:\n" + "".join(seen[-30:]).replace(self.token, "<token>"))
            seen.append(line)
            self.log = "".join(seen).replace(self.token, "<token>")
            if "is running at" in line:
                self._check_listening(seen)
                return
        raise AssertionError("jupyter never said it was running")

    def _check_listening(self, seen: list[str]) -> None:
        # Jupyter Server logs "is running at" and binds its port in a callback
        # just after, without a log line: try to connect, a bounded number of times.
        deadline = time.monotonic() + seconds(20)
        for _ in range(2000):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=seconds(5)).close()
                return
            except OSError as exc:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    log = "".join(seen[-30:]).replace(self.token, "<token>")
                    raise AssertionError(f"jupyter's port {self.port} refuses ({exc}):\n{log}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=seconds(15))
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=seconds(5))


@pytest.fixture
def jupyter(tmp_path):
    started: list[JupyterProcess] = []

    def start(app: str, *extra: str) -> JupyterProcess:
        root = tmp_path / "notebooks"
        root.mkdir(exist_ok=True)
        started.append(JupyterProcess(app, root, *extra))
        started[-1].wait_ready()
        return started[-1]

    yield start
    for process in started:
        process.stop()


#: app -> (its command-line options, the page that opens a notebook)
APPS = {
    "lab": (["--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"], "lab/tree"),
    "notebook": (["--JupyterNotebookApp.expose_app_in_browser=True"], "notebooks"),
}


@pytest.mark.parametrize("app", ["lab", "notebook"], ids=["JupyterLab", "Notebook 7"])
def test_jupyter_runs_lesson_05_and_its_client_shows_messages_pushed_by_the_kernel(page, jupyter, tmp_path, app):
    if app == "notebook":
        pytest.importorskip("notebook", reason="Notebook 7 is not installed: pip install -r requirements-test.txt")
    options, route = APPS[app]
    lab = jupyter(app, *options, f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}")
    shutil.copy(ROOT / "notebooks" / LESSON, tmp_path / "notebooks" / LESSON)
    page.set_default_timeout(ms(60))
    page.goto(f"http://127.0.0.1:{lab.port}/{route}/{LESSON}?token={lab.token}")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext")
    # Run-all before the kernel is connected and idle races the kernel: wait first.
    page.wait_for_function(
        """() => {
            const ctx = window.jupyterapp.shell.currentWidget.sessionContext;
            const kernel = ctx.session && ctx.session.kernel;
            return kernel && kernel.connectionStatus === "connected" && kernel.status === "idle";
        }""",
        timeout=ms(90),
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    # The lesson runs to its end (wslab.stop_all() closes the clients), and
    # JupyterLab may hide cells scrolled out of view: read the logs' text.
    logs = """(title) => Array.from(document.querySelectorAll('.wslab-client'))
        .filter((el) => el.textContent.includes(title))
        .map((el) => el.querySelector('.wslab-log').textContent)"""
    page.wait_for_function(
        f"() => ({logs})('messages from the kernel').some((t) => t.includes('< tick 4 at'))",
        timeout=ms(120),
    )
    (text,) = page.evaluate(logs, "messages from the kernel")
    assert "= connected: the server spoke first" in text
    assert "< hello from the kernel" in text
    assert "straight to the kernel's server" in text
    assert lab.token not in text
    # The chat room's client in the same notebook joined as "me" and saw the Python classmates.
    page.wait_for_function(
        f"() => ({logs})('the chat room').some((t) => t.includes('ada: hi bob, hi page'))",
        timeout=ms(60),
    )
    (chat,) = page.evaluate(logs, "the chat room")
    assert "welcome to wslab chat, me" in chat
    assert "ada: <script>alert(" in chat  # shown as text


# jupyter-server-proxy carries the WebSocket to the kernel's port


def test_the_proxied_url_works_through_a_real_jupyter_server_proxy(jupyter):
    server = jupyter("server")
    assert "jupyter_server_proxy | extension was successfully loaded" in server.log
    chan = wslab.push_channel_in_thread(name="b-proxied")
    info = wb.jupyter_server(pid=server.proc.pid, runtime_dir=str(server.runtime))
    assert info is not None and "token" not in info
    url = proxy_url(chan.server.port, server=info)
    assert url == f"ws://127.0.0.1:{server.port}/proxy/{chan.server.port}/"

    async def main():
        headers = {"Authorization": f"token {server.token}"}
        async with connect(url, additional_headers=headers, open_timeout=seconds(20)) as ws:
            greeting = await asyncio.wait_for(ws.recv(), seconds(10))
            chan.push("through the proxy")
            pushed = await asyncio.wait_for(ws.recv(), seconds(10))
            await ws.send("back through the proxy")
            back = await chan.next_message(timeout=seconds(10))
        return greeting, pushed, back

    assert arun(main(), timeout=40) == ("hello from the kernel", "through the proxy", "back through the proxy")


# The push channel and URL building on the kernel side, without a browser


def test_push_channel_greets_first_replays_recent_pushes_and_collects_replies():
    chan = wslab.push_channel_in_thread(name="b-chan", replay=2)
    for text in ("one", "two", "three"):
        assert chan.push(text) == 0  # nobody connected yet

    async def main():
        async with connect(chan.url) as ws:
            first = [await asyncio.wait_for(ws.recv(), seconds(5)) for _ in range(3)]
            reached = await asyncio.to_thread(chan.push, "live")
            live = await asyncio.wait_for(ws.recv(), seconds(5))
            await ws.send("reply")
            reply = await chan.next_message(timeout=seconds(5))
        return first, reached, live, reply

    first, reached, live, reply = arun(main())
    assert first == ["hello from the kernel", "two", "three"]
    assert (reached, live, reply) == (1, "live", "reply")
    assert [text for _, text in chan.received] == ["reply"]
    with pytest.raises(TypeError, match="push\\(\\) sends text"):
        chan.push(b"bytes")
    chan.stop()
    with pytest.raises(RuntimeError, match="push channel is stopped"):
        chan.push("late")



def test_proxy_url_under_jupyterhub_is_the_service_prefix_path(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ada/")
    assert proxy_url(8765) == "/user/ada/proxy/8765/"
    assert url_plan(8765)["prefer_proxy"] is True


def test_proxy_url_next_to_a_jupyter_server_keeps_its_base_url_and_scheme(monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    info = {"url": "https://127.0.0.1:9999/base/", "base_url": "/base/"}
    assert proxy_url(8765, server=info) == "wss://127.0.0.1:9999/base/proxy/8765/"
    plan = url_plan(8765)
    assert plan["prefer_proxy"] is False and plan["direct_url"] == "ws://127.0.0.1:8765/"


def test_proxy_url_without_any_jupyter_server_says_what_to_do(monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    with pytest.raises(LookupError, match="connect straight to ws://127.0.0.1"):
        proxy_url(8765, pid=-1)
    with pytest.raises(ValueError, match="port must be 1-65535"):
        proxy_url(0, server={"url": "http://x/"})


def test_browser_client_refuses_a_stopped_server_and_unknown_targets():
    srv = wslab.serve_in_thread(wslab.handlers.echo, name="b-stopped")
    srv.stop()
    with pytest.raises(ValueError, match="'b-stopped' is stopped"):
        wb.browser_client(srv)
    with pytest.raises(TypeError, match="needs a wslab server"):
        wb.browser_client(object())
    room = wslab.chat_room_in_thread(name="b-nonick")
    with pytest.raises(ValueError, match="needs a nickname"):
        wb.browser_client(room)


def test_client_html_cannot_be_broken_out_of_by_its_title_or_config():
    fragment = client_html({"url": "ws://127.0.0.1:1/</script><script>alert(1)</script>"},
                           title="<img src=x>")
    assert "<img src=x>" not in fragment
    assert fragment.count("</script>") == 1
    assert "innerHTML" not in fragment and "textContent" in fragment
    assert re.search(r'id="wslab-client-[\w-]+"', fragment)
    config = json.loads(re.search(r"const cfg = (\{.*?\});", fragment)[1])
    assert config["url"] == "ws://127.0.0.1:1/</script><script>alert(1)</script>"


# Engineer guard: the instructor shown apart, and browser_client without Jupyter's server app


def test_the_instructor_is_shown_apart_and_a_student_cannot_take_the_name(chromium):
    room = wslab.chat_room_in_thread(name="b-teacher")
    student, imposter = chromium.new_page(), chromium.new_page()
    try:
        join_chat(student, room.page_url, "ada")
        room.say("read section 5.5")
        wait_for_line(student, "* [instructor] teacher: read section 5.5")
        line = student.locator(".wslab-instructor").first
        assert line.inner_text() == "* [instructor] teacher: read section 5.5"
        imposter.goto(room.page_url)
        say(imposter, "Teacher")  # the page asks for a nickname first
        wait_for_line(imposter, "closed: code 1008")
        assert "reserved for the instructor" in imposter.locator(".wslab-log").inner_text()
        assert room.members == ["ada"]
    finally:
        student.close()
        imposter.close()


def test_jupyter_server_reads_the_runtime_files_itself(tmp_path):
    me = os.getpid()
    (tmp_path / "jpserver-1.json").write_text(json.dumps(
        {"pid": me, "url": "http://127.0.0.1:8888/", "base_url": "/", "token": "s3cret"}))
    (tmp_path / "jpserver-2.json").write_text("{not json")
    (tmp_path / "jpserver-3.json").write_text(json.dumps({"pid": 2**22 + 12345, "url": "x"}))
    (tmp_path / "other.json").write_text(json.dumps({"pid": me}))
    info = wb.jupyter_server(pid=me, runtime_dir=str(tmp_path))
    assert info == {"pid": me, "url": "http://127.0.0.1:8888/", "base_url": "/"}
    assert wb.jupyter_server(pid=2**22 + 12345, runtime_dir=str(tmp_path)) is None
    assert wb.jupyter_server(pid=me, runtime_dir=str(tmp_path / "missing")) is None
    assert len(list(tmp_path.iterdir())) == 4  # nobody's file deleted


def test_the_first_browser_client_is_fast_and_never_imports_jupyter_server():
    """Issue 15: importing jupyter_server.serverapp cost about 2 s on the first call."""
    # A kernel has IPython loaded already; what is timed is the look-up of the Jupyter server.
    code = (
        "import sys, time, IPython.display, wslab\n"
        "srv = wslab.serve_in_thread(wslab.handlers.echo, name='x')\n"
        "c, t = time.thread_time(), time.perf_counter(); wslab.browser_client(srv)\n"
        "print(time.thread_time() - c, time.perf_counter() - t, 'jupyter_server.serverapp' in sys.modules)\n"
        "srv.stop()\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("JUPYTERHUB_SERVICE_PREFIX", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=seconds(60), env=env)
    assert out.returncode == 0, out.stderr
    cpu, wall, imported = out.stdout.split()
    assert imported == "False"
    # CPU time is what the call costs (about 15 ms here, 2 s with the import); wall time also pays
    # for the shared machine's load.
    assert float(cpu) < seconds(0.3)
    assert float(wall) < seconds(1)


def test_a_page_that_floods_the_push_channel_cannot_grow_received_without_bound():
    async def main():
        chan = await wslab.push_channel(name="b-flood", keep=100)
        async with connect(chan.url) as ws:
            await asyncio.wait_for(ws.recv(), seconds(5))  # the greeting
            for i in range(1000):
                await ws.send(f"m{i}")
            last = None
            async with asyncio.timeout(seconds(10)):
                while last != "m999":
                    last = await chan.next_message()
        return [text for _, text in chan.received]

    received = arun(main())
    assert received == [f"m{i}" for i in range(900, 1000)]
    with pytest.raises(ValueError, match="keep"):
        wslab.PushChannel(keep=0)
