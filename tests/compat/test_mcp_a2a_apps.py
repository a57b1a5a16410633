"""The built-in proxy workers (apps-workers.md §4.5–4.6): an ``mcp-server`` app turns real
MCP servers (FastMCP over streamable HTTP and over the legacy SSE transport) into Hypha
services with ``tools``, ``resources`` and ``prompts``; an ``a2a-agent`` app turns a real
a2a-sdk agent into a service with ``skills``, ``run`` and ``agent_card``. The servers run
as subprocesses on loopback (``mcp_a2a_fixtures/``); everything is driven through
``public/server-apps`` by the real hypha-rpc client."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from compat_helpers import expect_error, unique_id

FIXTURES = Path(__file__).resolve().parent / "mcp_a2a_fixtures"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(script: str, *args: str, probe: str):
    """Starts ``python <script> <port> <args>`` and waits until ``probe`` answers."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(FIXTURES / script), str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{script} exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            with httpx.stream("GET", url + probe, timeout=1) as r:
                if r.status_code < 500:
                    return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{script} did not come up on {url}")


def _stop(proc):
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def mcp_http():
    proc, url = _serve("mcp_server.py", "streamable-http", probe="/mcp/")
    yield f"{url}/mcp"
    _stop(proc)


@pytest.fixture(scope="module")
def mcp_sse():
    proc, url = _serve("mcp_server.py", "sse", probe="/messages/")
    yield f"{url}/sse"
    _stop(proc)


@pytest.fixture(scope="module")
def mcp_http_with_key():
    """A streamable-HTTP server that refuses requests without ``X-Key: k1``."""
    proc, url = _serve("mcp_server.py", "streamable-http", "require-header", probe="/mcp/")
    yield f"{url}/mcp"
    _stop(proc)


@pytest.fixture(scope="module")
def mcp_sse_with_key():
    """An SSE server that refuses requests without ``X-Key: k1``."""
    proc, url = _serve("mcp_server.py", "sse", "require-header", probe="/messages/")
    yield f"{url}/sse"
    _stop(proc)


@pytest.fixture(scope="module")
def a2a_agent():
    proc, url = _serve("a2a_server.py", probe="/.well-known/agent-card.json")
    yield url
    _stop(proc)


def _dead_url() -> str:
    return f"http://127.0.0.1:{_free_port()}/mcp"


async def _install_and_start(u, manifest: dict):
    app = await u.controller.install(manifest=manifest, overwrite=True, timeout=30)
    session = await u.controller.start(app["id"], timeout=30)
    return app, session


def _mcp_manifest(servers: dict) -> dict:
    return {"name": "Calc MCP", "type": "mcp-server", "version": "0.1.0", "mcpServers": servers}


@pytest.mark.timeout_s(90)
@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_an_mcp_server_app_exposes_tools_resources_and_prompts(apps_user, transport, request):
    url = request.getfixturevalue("mcp_http" if transport == "streamable-http" else "mcp_sse")
    u = await apps_user()
    app, session = await _install_and_start(u, _mcp_manifest({"calc": {"type": transport, "url": url}}))
    assert app["wait_for_service"] == "default"
    svc = await u.api.get_service(f"calc@{app['id']}")
    assert svc["type"] == "mcp" and svc["app_id"] == app["id"]
    # The same service by its full id.
    assert (await u.api.get_service(f"{session['id']}:calc"))["type"] == "mcp"

    # Tools: keyword and positional arguments (positional in the signature's order, not
    # the alphabetical one: minus(b, a) = b - a), results converted back from text.
    assert set(svc["tools"]) == {"add", "minus", "describe"}
    assert await svc.tools.add(a=1, b=2) == 3
    assert await svc.tools.add(5, 6) == 11
    assert await svc.tools.minus(10, 3) == 7
    assert await svc.tools.describe(name="abcd") == {"name": "abcd", "length": 4}
    # Each tool carries its MCP input schema.
    schema = svc.tools.add.__schema__
    assert schema["name"] == "add" and set(schema["parameters"]["properties"]) == {"a", "b"}
    assert "Add two integers" in schema["description"]

    # Resources: by URI, with their metadata and read().
    res = svc.resources["resource://greeting"]
    assert res["name"] == "greeting" and res["mimeType"] == "text/plain"
    assert await res.read() == "Hello from the MCP resource"

    # Prompts: read(**args) → {description, messages: [{role, content: {type, text}}]}.
    prompt = svc.prompts["review"]
    assert prompt["description"] == "Review some code"
    got = await prompt.read(code="x = 1")
    assert got["messages"][0]["role"] == "user"
    assert got["messages"][0]["content"]["type"] == "text"
    assert "Please review this code:\nx = 1" == got["messages"][0]["content"]["text"]

    # A tool error reaches the caller.
    err = await expect_error(svc.tools.add(a="not a number", b=2))
    assert "add" in str(err)

    # The worker's logs tell what happened.
    logs = await u.controller.get_logs(session["id"])
    text = "\n".join(i["content"] for i in logs["items"])
    assert "MCP server calc: 3 tools, 1 resources, 1 prompts" in text, text

    # stop() takes the services away.
    await u.controller.stop(session["id"])
    err = await expect_error(u.api.get_service(f"{session['id']}:calc"))
    assert "not found" in str(err).lower(), err


@pytest.mark.timeout_s(60)
async def test_an_installed_mcp_app_starts_lazily_on_get_service(apps_user, mcp_http):
    u = await apps_user()
    manifest = _mcp_manifest({"lazycalc": {"type": "streamable-http", "url": mcp_http}})
    app = await u.controller.install(manifest=manifest, overwrite=True, timeout=30)
    svc = await u.api.get_service(f"lazycalc@{app['id']}")
    assert await svc.tools.add(2, 2) == 4


@pytest.mark.timeout_s(60)
async def test_an_mcp_app_whose_only_server_is_dead_fails_with_a_clear_error(apps_user):
    u = await apps_user()
    manifest = _mcp_manifest({"deadcalc": {"type": "streamable-http", "url": _dead_url()}})
    err = await expect_error(u.controller.install(manifest=manifest, overwrite=True, timeout=30), timeout=45)
    assert "deadcalc" in str(err) and "Failed to connect to MCP server" in str(err), err


@pytest.mark.timeout_s(60)
async def test_an_mcp_app_with_several_servers_survives_a_dead_one(apps_user, mcp_http):
    u = await apps_user()
    manifest = _mcp_manifest(
        {
            "good": {"type": "streamable-http", "url": mcp_http},
            "gone": {"type": "sse", "url": f"http://127.0.0.1:{_free_port()}/sse"},
        }
    )
    app, session = await _install_and_start(u, manifest)
    svc = await u.api.get_service(f"good@{app['id']}")
    assert await svc.tools.add(a=20, b=22) == 42
    err = await expect_error(u.api.get_service(f"{session['id']}:gone"))
    assert "not found" in str(err).lower(), err
    logs = await u.controller.get_logs(session["id"], type="error")
    assert any("gone" in i["content"] for i in logs["items"]), logs


@pytest.mark.timeout_s(60)
async def test_a_manifest_without_servers_is_refused(apps_user):
    u = await apps_user()
    err = await expect_error(
        u.controller.install(manifest={"name": "X", "type": "mcp-server", "version": "0.1.0", "mcpServers": {}}, overwrite=True)
    )
    assert "mcpServers" in str(err), err


@pytest.mark.timeout_s(60)
async def test_an_a2a_agent_app_exposes_skills_run_and_the_agent_card(apps_user, a2a_agent):
    u = await apps_user()
    manifest = {
        "name": "Echo A2A",
        "type": "a2a-agent",
        "version": "0.1.0",
        "a2aAgents": {"echo-agent": {"url": a2a_agent, "headers": {"X-Test": "1"}}},
    }
    app, session = await _install_and_start(u, manifest)
    svc = await u.api.get_service(f"echo-agent@{app['id']}")
    assert svc["type"] == "a2a-agent-proxy"
    card = svc["agent_card"]
    assert card["name"] == "Echo Agent" and card["version"] == "1.2.3"
    assert card["capabilities"] == {"streaming": True, "push_notifications": False}
    assert card["default_input_modes"] == ["text"]
    assert len(svc["skills"]) == 1
    assert await svc.skills[0](text="hello") == "Echo: hello"
    assert await svc.skills[0]("positional") == "Echo: positional"
    word = unique_id("w")
    assert await svc.run({"role": "user", "parts": [{"kind": "text", "text": word}]}) == f"Echo: {word}"
    await u.controller.stop(session["id"])
    err = await expect_error(u.api.get_service(f"{session['id']}:echo-agent"))
    assert "not found" in str(err).lower(), err


@pytest.mark.timeout_s(60)
async def test_an_a2a_app_without_the_agents_headers_is_refused_by_it(apps_user, a2a_agent):
    """The fixture agent wants ``X-Test: 1``: without ``headers`` the card fetch gets 401."""
    u = await apps_user()
    manifest = {"name": "No Headers", "type": "a2a-agent", "version": "0.1.0", "a2aAgents": {"bare": {"url": a2a_agent}}}
    err = await expect_error(u.controller.install(manifest=manifest, overwrite=True, timeout=30), timeout=45)
    assert "bare" in str(err) and "401" in str(err), err


@pytest.mark.rhizo_only
@pytest.mark.timeout_s(60)
@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_mcp_servers_get_the_manifest_headers(apps_user, transport, request):
    """rhizo sends ``headers`` on every request of both transports (the reference drops
    them for streamable HTTP and leaves them out of SSE discovery, so a server behind an
    API key cannot be proxied there)."""
    url = request.getfixturevalue("mcp_http_with_key" if transport == "streamable-http" else "mcp_sse_with_key")
    u = await apps_user()
    keyed = {"keyed": {"type": transport, "url": url, "headers": {"X-Key": "k1"}}}
    app, _ = await _install_and_start(u, _mcp_manifest(keyed))
    svc = await u.api.get_service(f"keyed@{app['id']}")
    assert await svc.tools.add(a=2, b=3) == 5
    assert await svc.resources["resource://greeting"].read() == "Hello from the MCP resource"
    unkeyed = {"unkeyed": {"type": transport, "url": url}}
    err = await expect_error(u.controller.install(manifest=_mcp_manifest(unkeyed), overwrite=True, timeout=30), timeout=45)
    assert "unkeyed" in str(err) and "401" in str(err), err


@pytest.mark.timeout_s(60)
async def test_an_a2a_app_whose_agent_is_unreachable_fails(apps_user):
    u = await apps_user()
    manifest = {
        "name": "Gone A2A",
        "type": "a2a-agent",
        "version": "0.1.0",
        "a2aAgents": {"nobody": {"url": f"http://127.0.0.1:{_free_port()}"}},
    }
    err = await expect_error(u.controller.install(manifest=manifest, overwrite=True, timeout=30), timeout=45)
    assert "nobody" in str(err) and "agent-card" in str(err), err
