"""Both halves of MCP support together: a real FastMCP server installed as an
``mcp-server`` app (apps-workers.md §4.5) becomes a Hypha service of type ``mcp``, which the
server's own MCP endpoint (workspace-api.md §8.1, ``--enable-mcp``) serves again to the
Python ``mcp`` client, with the original tools, schemas, resources and prompts."""

import os

import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

from conftest import _start_rhizo, _stop_rhizo
from test_mcp_a2a_apps import _install_and_start, _mcp_manifest, _serve, _stop


@pytest.fixture(scope="module")
def server_url(request):
    """This module's server: started with ``--enable-mcp`` (``apps_user`` uses it)."""
    if os.environ.get("HYPHA_SERVER_URL"):
        pytest.skip("needs a server started with --enable-mcp")
    server, stop, workdir = _start_rhizo(args=["--enable-mcp"])
    yield server.url
    _stop_rhizo(request, server, stop, workdir)


@pytest.fixture(scope="module")
def fastmcp_url():
    proc, url = _serve("mcp_server.py", "streamable-http", probe="/mcp/")
    yield f"{url}/mcp"
    _stop(proc)


@pytest.mark.timeout_s(90)
async def test_a_proxied_mcp_server_is_served_again_over_mcp(server_url, apps_user, fastmcp_url):
    u = await apps_user()
    app, session = await _install_and_start(
        u, _mcp_manifest({"calc": {"type": "streamable-http", "url": fastmcp_url}})
    )
    headers = {"Authorization": f"Bearer {u.token}"}
    url = f"{server_url}/{u.ws}/mcp/{session['id'].split('/')[-1]}:calc/mcp"
    async with streamablehttp_client(url, headers=headers) as (read, write, _):
        async with ClientSession(read, write) as mcp:
            init = await mcp.initialize()
            assert init.capabilities.tools is not None and init.capabilities.prompts is not None
            tools = {t.name: t for t in (await mcp.list_tools()).tools}
            assert set(tools) == {"add", "minus", "describe"}
            assert set(tools["add"].inputSchema["properties"]) == {"a", "b"}
            assert "Add two integers" in tools["add"].description
            out = await mcp.call_tool("add", {"a": 19, "b": 23})
            assert not out.isError and out.content[0].text == "42"
            uris = [str(r.uri) for r in (await mcp.list_resources()).resources]
            assert uris == ["resource://greeting"]
            body = await mcp.read_resource("resource://greeting")
            assert body.contents[0].text == "Hello from the MCP resource"
            assert [p.name for p in (await mcp.list_prompts()).prompts] == ["review"]
            got = await mcp.get_prompt("review", {"code": "x = 1"})
            assert got.messages[0].content.text == "Please review this code:\nx = 1"
    await u.controller.stop(session["id"])
