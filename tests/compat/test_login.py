"""Log-in (workspace-api.md §9.1) with the real hypha-rpc ``login()`` and a real headless
Chromium (Debian's ``/usr/bin/chromium``, driven through Playwright's async API, no browser
download): a person signs up and logs in on the page at ``/public/apps/hypha-login/`` with
a local account (``--enable-local-auth``), ``login()`` returns a token for that account, and
``connect_to_server`` with it shows the account's id and e-mail. Also: ``check()`` timeouts
and unknown keys, wrong passwords, duplicate and weak sign-ups, ``logout()``, forged,
tampered and expired tokens handed to ``report``, and the page of a server without local
accounts (a pasted token completes the log-in)."""

import asyncio
import contextlib
import os
import time
from pathlib import Path

import httpx
import pytest
from hypha_rpc import connect_to_server, login, logout

from artifact_helpers import user_token
from compat_helpers import expect_error, unique_id

CHROMIUM = Path("/usr/bin/chromium")
# Never let Playwright fetch a browser, and keep Chromium off the (closed) network.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PASSWORD = "correct-horse-7"

pytestmark = pytest.mark.rhizo_only

try:
    from playwright.async_api import async_playwright, expect
except ImportError:  # pragma: no cover - depends on the venv
    async_playwright = None


def _missing(what: str):
    if os.environ.get("CI"):
        pytest.fail(what)
    pytest.skip(what)


@pytest.fixture(scope="module")
def local_url(request):
    """A rhizo server of its own with local accounts on."""
    from conftest import EXTERNAL_URL, _start_rhizo, _stop_rhizo

    if EXTERNAL_URL:
        pytest.skip("needs a rhizo server started with --enable-local-auth")
    server, stop, workdir = _start_rhizo(args=["--enable-local-auth"])
    yield server.url
    _stop_rhizo(request, server, stop, workdir)


class Browser:
    """One headless Chromium page; records the page's uncaught script errors."""

    def __init__(self, page, errors):
        self.page = page
        self.errors = errors

    async def message(self, text: str):
        await expect(self.page.locator("#message")).to_have_text(text, timeout=15_000)


async def _browser(pw):
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    b = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    page = await (await b.new_context()).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return b, Browser(page, errors)


@pytest.fixture
async def browser():
    if async_playwright is None:
        _missing("playwright is not installed (tests/compat/requirements.txt)")
    async with async_playwright() as pw:
        b, br = await _browser(pw)
        try:
            yield br
        finally:
            await b.close()
        assert not br.errors, f"uncaught errors in the page: {br.errors}"


@contextlib.asynccontextmanager
async def _login(url: str, **config):
    """Runs ``login()`` in a task; yields the task and the context its callback got, and
    cancels the task if it is still running at the end."""
    contexts: asyncio.Queue = asyncio.Queue()

    async def callback(context):
        await contexts.put(context)

    task = asyncio.create_task(
        login({"server_url": url, "login_callback": callback, "login_timeout": 60, **config})
    )
    try:
        context = await asyncio.wait_for(contexts.get(), 20)
        yield task, context
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest.mark.timeout_s(120)
async def test_sign_up_and_log_in_on_the_page_completes_login(local_url, browser):
    async with _login(local_url) as (task, context):
        assert set(context) >= {"login_url", "key", "report_url", "check_url", "generate_url"}
        key = context["key"]
        assert context["login_url"] == f"{local_url}/public/apps/hypha-login/?key={key}"

        page = browser.page
        await page.goto(context["login_url"])
        await expect(page.locator("#local")).to_be_visible()
        await expect(page.locator("#disabled")).to_be_hidden()
        email = f"{unique_id('person')}@Example.org"

        # A weak password is refused with the rule, an empty one too.
        await page.fill("#signup-email", email)
        await page.fill("#signup-password", "short1")
        await page.click("#signup-button")
        await browser.message("the password must have at least 8 characters")
        await page.fill("#signup-password", "onlyletters")
        await page.click("#signup-button")
        await browser.message("the password must mix letters with digits or symbols")

        await page.fill("#signup-password", PASSWORD)
        await page.click("#signup-button")
        await browser.message(f"Account created for {email.lower()}. Now log in.")
        # The same e-mail again (other case) is a duplicate.
        await page.fill("#signup-email", email.upper())
        await page.click("#signup-button")
        await browser.message("an account with this e-mail already exists")

        # A wrong password and an unknown account get the same answer; login() keeps waiting.
        await page.fill("#login-email", email)
        await page.fill("#login-password", "wrong-password-9")
        await page.click("#login-button")
        await browser.message("incorrect e-mail or password")
        await page.fill("#login-email", f"nobody-{unique_id('x')}@example.org")
        await page.click("#login-button")
        await browser.message("incorrect e-mail or password")
        assert not task.done(), "a failed log-in must not complete login()"

        await page.fill("#login-email", email)
        await page.fill("#login-password", PASSWORD)
        await page.click("#login-button")
        await browser.message(
            f"Logged in as {email.lower()}. You can close this window and return to your program."
        )
        token = await asyncio.wait_for(task, 20)
    assert isinstance(token, str) and token.count(".") == 2, token

    api = await asyncio.wait_for(connect_to_server({"server_url": local_url, "token": token}), 20)
    try:
        user = api.config["user"]
        assert user["email"] == email.lower()
        assert not user["is_anonymous"]
        assert api.config["workspace"] == f"ws-user-{user['id']}"
        # The same account logs in through the service too, with the same id.
        svc = await api.get_service("public/hypha-login")
        again = await svc.login(email=email, password=PASSWORD)
        assert again["success"] is True
        assert again["user_id"] == user["id"]
        assert again["workspace"] == f"ws-user-{user['id']}"
        bad = await expect_error(svc.login(email=email, password="nope-nope-1"))
        assert "incorrect e-mail or password" in str(bad)
    finally:
        await api.disconnect()

    # The key was consumed by check().
    async with httpx.AsyncClient() as http:
        r = await http.post(
            f"{local_url}/public/apps/hypha-login/api/report", json={"key": key, "token": token}
        )
    assert r.status_code == 404, r.text
    assert "invalid login key" in r.json()["detail"]

    # logout() gives the page that forgets the browser's log-in.
    out = await asyncio.wait_for(logout({"server_url": local_url}), 20)
    assert out["logout_url"] == f"{local_url}/public/apps/hypha-login/?logout=1"
    await page.goto(out["logout_url"])
    await browser.message("You are logged out.")
    assert await page.evaluate("localStorage.getItem('hypha_login_token')") is None


@pytest.mark.timeout_s(60)
async def test_login_with_a_workspace_gets_a_scoped_token(local_url):
    from conftest import TEST_JWT_SECRET

    email = f"{unique_id('scoped')}@example.org"
    async with httpx.AsyncClient() as http:
        r = await http.post(
            f"{local_url}/public/apps/hypha-login/api/signup",
            json={"email": email, "password": PASSWORD},
        )
        assert r.status_code == 200, r.text
        user_id = r.json()["user_id"]
        own = f"ws-user-{user_id}"
        async with _login(local_url, workspace=own, profile=True) as (task, context):
            assert context["login_url"].endswith(f"&workspace={own}")
            # Asking for a workspace the account has no right to is refused, the key survives.
            other = f"ws-user-{unique_id('other')}"
            r = await http.post(
                f"{local_url}/public/apps/hypha-login/api/login",
                json={"email": email, "password": PASSWORD, "key": context["key"], "workspace": "public-x"},
            )
            assert r.status_code == 403, r.text
            assert "has no permission on workspace public-x" in r.json()["detail"]
            other_token = user_token(unique_id("o"), other, TEST_JWT_SECRET)
            r = await http.post(
                context["report_url"],
                json={"key": context["key"], "token": other_token, "workspace": own},
            )
            assert r.status_code == 403, r.text
            assert "has no permission on workspace" in r.json()["detail"]
            assert not task.done()
            r = await http.post(
                f"{local_url}/public/apps/hypha-login/api/login",
                json={"email": email, "password": PASSWORD, "key": context["key"], "workspace": own},
            )
            assert r.status_code == 200, r.text
            profile = await asyncio.wait_for(task, 20)
    assert profile["user_id"] == user_id
    assert profile["email"] == email
    assert profile["workspace"] == own
    api = await asyncio.wait_for(
        connect_to_server({"server_url": local_url, "token": profile["token"], "workspace": own}), 20
    )
    try:
        assert api.config["workspace"] == own
        assert api.config["user"]["id"] == user_id
    finally:
        await api.disconnect()


@pytest.mark.timeout_s(60)
async def test_check_times_out_and_refuses_unknown_keys(local_url):
    api = await asyncio.wait_for(connect_to_server({"server_url": local_url}), 20)
    try:
        svc = await api.get_service("public/hypha-login")
        context = await svc.start()
        assert await svc.check(context["key"], timeout=0) is None, "not reported yet"
        t0 = time.monotonic()
        err = await expect_error(svc.check(context["key"], timeout=1))
        assert time.monotonic() - t0 >= 1.0
        assert "nobody logged in with this key within 1 s" in str(err)
        # The key stays valid after a timeout; an unknown one is refused at once.
        assert await svc.check(context["key"], timeout=0) is None
        err = await expect_error(svc.check("0" * 32, timeout=5))
        assert "invalid login key or the key has expired" in str(err)
    finally:
        await api.disconnect()


@pytest.mark.timeout_s(60)
async def test_report_refuses_forged_tampered_and_expired_tokens(local_url):
    from conftest import TEST_JWT_SECRET

    api = await asyncio.wait_for(connect_to_server({"server_url": local_url}), 20)
    try:
        svc = await api.get_service("public/hypha-login")
        context = await svc.start()
        key = context["key"]
        uid = unique_id("victim").lower()
        ws = f"ws-user-{uid}"
        good = user_token(uid, ws, TEST_JWT_SECRET)
        header, payload, sig = good.split(".")
        flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
        bad_tokens = {
            "forged": user_token(uid, ws, "not-the-server-secret-0123456789"),
            "tampered": f"{header}.{flipped}.{sig}",
            "expired": user_token(uid, ws, TEST_JWT_SECRET, expires_in=-120),
            "garbage": "not-a-token",
        }
        for what, tok in bad_tokens.items():
            err = await expect_error(svc.report(key=key, token=tok))
            assert "the reported token is not valid" in str(err), (what, err)
            async with httpx.AsyncClient() as http:
                r = await http.post(context["report_url"], json={"key": key, "token": tok})
            assert r.status_code == 403, (what, r.text)
        assert await svc.check(key, timeout=0) is None, "nothing was reported"
        # An unknown key is refused before the token is looked at.
        err = await expect_error(svc.report(key="f" * 32, token=good))
        assert "invalid login key" in str(err)
        # A valid token completes it, unchanged when no workspace is asked for.
        await svc.report(key=key, token=good)
        assert await svc.check(key, timeout=5) == good
    finally:
        await api.disconnect()


@pytest.mark.timeout_s(90)
async def test_without_local_accounts_a_pasted_token_completes_login(server_url, browser, root_token):
    admin = await asyncio.wait_for(
        connect_to_server({"server_url": server_url, "token": root_token}), 20
    )
    try:
        ws = f"ws-user-{unique_id('paster').lower()}"
        token = await admin.generate_token({"workspace": ws, "permission": "read_write"})
    finally:
        await admin.disconnect()
    async with httpx.AsyncClient() as http:
        r = await http.post(
            f"{server_url}/public/apps/hypha-login/api/signup",
            json={"email": "x@example.org", "password": PASSWORD},
        )
    assert r.status_code == 403, r.text
    assert "--enable-local-auth" in r.json()["detail"]

    async with _login(server_url) as (task, context):
        page = browser.page
        await page.goto(f"{server_url}/login?key={context['key']}")
        await expect(page.locator("#disabled")).to_be_visible()
        await expect(page.locator("#disabled")).to_contain_text("Local accounts are disabled")
        await expect(page.locator("#local")).to_be_hidden()
        await page.fill("#token-input", "forged.token.value")
        await page.click("#token-button")
        await expect(page.locator("#message")).to_contain_text("the reported token is not valid")
        assert not task.done()
        await page.fill("#token-input", token)
        await page.click("#token-button")
        await browser.message(
            "Logged in as the token's user. You can close this window and return to your program."
        )
        assert await asyncio.wait_for(task, 20) == token
