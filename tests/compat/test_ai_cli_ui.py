"""The ai-cli worker's web UI (``GET /`` of its REST API, workers/src/ai_cli/ui.html) driven
in a real headless Chromium (Debian's ``/usr/bin/chromium``, through Playwright): the page
loads and lists the CLIs, a worker is created through the form, a conversation runs through
the chat (two turns, with the real Claude Code / OpenCode CLI against the stand-in model
API), the history comes back after a reload, a project path outside the allowed base is
refused in the form, the delete button removes the worker, and the API keys never reach the
page.

The worker runs REST-only (no Hypha server). The tests are plain (sync) functions, so they
run outside pytest-asyncio's loop, as Playwright's sync API needs; every wait is one of
Playwright's, bounded by ``WAIT_MS``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ai_cli_helpers import AiCliWorker, clis_installed
from compat_helpers import unique_id
from conftest import _binary_path

CHROMIUM = Path("/usr/bin/chromium")
# Never let Playwright fetch a browser, and keep Chromium off the (closed) network.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# A claude turn takes ~1 s, an opencode turn ~4 s; a CLI's first start more.
WAIT_MS = 60_000


def _missing(what: str):
    if os.environ.get("CI"):
        pytest.fail(what)
    pytest.skip(what)


try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the venv
    sync_playwright = None


@pytest.fixture(scope="module")
def ai_worker():
    if not clis_installed():
        _missing("the AI CLIs are not installed (tests/run.sh installs them into $RHIZO_AI_CLIS)")
    w = AiCliWorker(_binary_path())
    yield w
    w.close()


@pytest.fixture(scope="module")
def browser():
    if sync_playwright is None:
        _missing("playwright is not installed (tests/compat/requirements.txt)")
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    expect.set_options(timeout=WAIT_MS)  # Playwright's assertions wait up to 5 s by default
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture
def page(browser, ai_worker):
    """A fresh page on the UI; fails the test on any uncaught script error of the page."""
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(ai_worker.http + "/")
    expect(pg).to_have_title("AI Code Worker Manager")
    # The CLI select is filled from /api/ai-clis.
    expect(pg.locator("#ai-cli-select option")).not_to_have_count(0)
    yield pg
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def _api_workers(w) -> list[dict]:
    status, body = w.request("GET", "/api/workers")
    assert status == 200, body
    return body["workers"]


def _exact(text: str) -> re.Pattern:
    return re.compile("^" + re.escape(text) + "$")


def _bubble(page, kind: str, text: str):
    """The ``.message-<kind>`` elements of the chat whose text is exactly ``text``."""
    return page.locator(f"#messages-container .message-{kind}").filter(
        has=page.locator(".text", has_text=_exact(text)))


def _messages(page) -> list[tuple[str, str]]:
    """(kind, text) of every message shown in the chat, in order."""
    shown = page.locator("#messages-container .message").evaluate_all(
        "els => els.map(e => [e.className.replace('message message-', ''), e.querySelector('.text').textContent])")
    return [tuple(m) for m in shown]


def _worker_item(page, wid: str):
    return page.locator(f'#workers-list .worker-item[data-worker-id="{wid}"]')


def _create_through_form(page, name: str, project: str, cli: str | None):
    page.click("#new-worker-btn")
    expect(page.locator("#create-worker-modal")).to_be_visible()
    page.fill("input[name=name]", name)
    page.fill("input[name=project_path]", project)
    if cli is not None:
        page.select_option("select[name=ai_cli_type]", cli)
    page.click("#create-submit")


def _send(page, text: str):
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")
    expect(_bubble(page, "user", text)).to_have_count(1)
    expect(page.locator("#message-input")).to_have_value("")


def test_the_page_loads_and_offers_the_clis(page, ai_worker):
    expect(page.locator("#no-worker-selected")).to_be_visible()
    expect(page.locator("#chat-interface")).to_be_hidden()
    expect(page.locator("#create-worker-modal")).to_be_hidden()
    options = page.locator("#ai-cli-select option")
    values = options.evaluate_all("os => os.map(o => [o.value, o.textContent])")
    assert ["claude", "Claude Code"] in values and ["opencode", "OpenCode"] in values, values
    # claude is the default.
    assert page.locator("#ai-cli-select").input_value() == "claude"
    # Cancel closes the form.
    page.click("#new-worker-btn")
    expect(page.locator("#create-worker-modal")).to_be_visible()
    page.click("#create-cancel")
    expect(page.locator("#create-worker-modal")).to_be_hidden()


def test_a_project_path_outside_the_base_is_refused_in_the_form(page, ai_worker):
    w = ai_worker
    before = _api_workers(w)
    expect(page.locator("#workers-list .worker-item")).to_have_count(len(before))
    name = unique_id("ui-bad")
    for bad in ("/etc", "../../escape"):
        _create_through_form(page, name, bad, None)
        expect(page.locator("#create-error")).to_contain_text("outside the allowed base")
        # The form stays open with the error; nothing was created.
        expect(page.locator("#create-worker-modal")).to_be_visible()
        expect(page.locator("#chat-interface")).to_be_hidden()
        page.click("#create-cancel")
    assert [x["id"] for x in _api_workers(w)] == [x["id"] for x in before]
    assert not any(x["name"] == name for x in _api_workers(w))
    expect(page.locator("#workers-list .worker-item")).to_have_count(len(before))
    # Reopening the form clears the old error.
    page.click("#new-worker-btn")
    expect(page.locator("#create-error")).to_have_text("")


@pytest.mark.parametrize("cli", ["claude", "opencode"])
def test_a_conversation_through_the_ui(page, ai_worker, cli):
    w = ai_worker
    first, second = f"{cli} UI first reply", f"{cli} UI second reply"
    w.standin.script([first, second])
    name = unique_id(f"ui-{cli}")
    project = unique_id("ui-proj")

    # Create through the form (claude: the default of the select, untouched).
    _create_through_form(page, name, project, None if cli == "claude" else cli)
    expect(page.locator("#create-worker-modal")).to_be_hidden()
    created = [x for x in _api_workers(w) if x["name"] == name]
    assert len(created) == 1, created
    worker = created[0]
    wid = worker["id"]
    # The relative project path landed under the allowed base.
    assert worker["ai_cli_type"] == cli
    assert Path(worker["project_path"]) == w.projects / project, worker
    assert (w.projects / project).is_dir()
    # It is in the list, selected, and its chat is open and connected.
    item = _worker_item(page, wid)
    expect(item).to_have_count(1)
    expect(item.locator(".name")).to_have_text(name)
    expect(item.locator(".meta")).to_contain_text(cli)
    expect(item).to_have_class(re.compile(r"\bactive\b"))
    expect(page.locator("#chat-interface")).to_be_visible()
    expect(page.locator("#no-worker-selected")).to_be_hidden()
    expect(page.locator("#chat-title")).to_have_text(name)
    expect(page.locator("#chat-type")).to_have_text(cli)
    expect(_bubble(page, "system", f"Connected to {name}")).to_have_count(1)

    # Two turns through the input and Enter.
    _send(page, "Hello from the browser")
    expect(_bubble(page, "output", first).first).to_be_visible()
    _send(page, "And a second question")
    expect(_bubble(page, "output", second).first).to_be_visible()
    shown = _messages(page)
    order = [shown.index(m) for m in [("user", "Hello from the browser"), ("output", first),
                                      ("user", "And a second question"), ("output", second)]]
    assert order == sorted(order), shown
    assert not any(k == "error" for k, _ in shown), shown
    # The second turn carried the first to the model: a real multi-turn conversation.
    hist = w.standin.history()
    assert ("user", "Hello from the browser") in hist and ("assistant", first) in hist \
        and ("user", "And a second question") in hist, hist
    html = page.content()
    for secret in w.secrets:
        assert secret not in html, f"the page shows an API key ({secret[:8]}…)"

    # After a reload, selecting the worker shows the history.
    page.reload()
    expect(page.locator("#chat-interface")).to_be_hidden()
    item = _worker_item(page, wid)
    expect(item).to_have_count(1)
    item.click()
    expect(item).to_have_class(re.compile(r"\bactive\b"))
    expect(page.locator("#chat-title")).to_have_text(name)
    expect(_bubble(page, "user", "Hello from the browser")).to_have_count(1)
    expect(_bubble(page, "user", "And a second question")).to_have_count(1)
    expect(_bubble(page, "output", first).first).to_be_visible()
    expect(_bubble(page, "output", second).first).to_be_visible()
    shown = _messages(page)
    order = [shown.index(m) for m in [("system", f"Connected to {name}"), ("user", "Hello from the browser"),
                                      ("output", first), ("user", "And a second question"), ("output", second)]]
    assert order == sorted(order), shown
    # The history shows the CLI's raw events too: still no key anywhere in the page.
    html = page.content()
    for secret in w.secrets:
        assert secret not in html, f"the page shows an API key ({secret[:8]}…) in the history"

    # Delete through the button (confirm() accepted).
    dialogs: list[str] = []

    def on_dialog(d):
        dialogs.append(f"{d.type}: {d.message}")
        d.accept()

    page.once("dialog", on_dialog)
    page.click("#delete-worker-btn")
    expect(_worker_item(page, wid)).to_have_count(0)
    assert dialogs == [f"confirm: Delete worker {name}?"], dialogs
    expect(page.locator("#chat-interface")).to_be_hidden()
    expect(page.locator("#no-worker-selected")).to_be_visible()
    assert wid not in [x["id"] for x in _api_workers(w)]
    assert w.request("GET", f"/api/workers/{wid}")[0] == 404
    # And it stays gone after a reload.
    page.reload()
    expect(page.locator("#ai-cli-select option")).not_to_have_count(0)
    expect(page.locator("#workers-list .worker-item")).to_have_count(len(_api_workers(w)))
    expect(_worker_item(page, wid)).to_have_count(0)
