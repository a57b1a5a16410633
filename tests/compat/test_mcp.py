"""Hypha services as MCP servers (workspace-api.md §8.1, ``--enable-mcp``), driven by the
real Python ``mcp`` SDK clients (streamable HTTP and SSE) against services registered by
hypha-rpc clients in Python and JavaScript."""

import asyncio
import json
import os
import shutil
from pathlib import Path

import httpx
import pytest
from hypha_rpc.utils.schema import schema_function
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamablehttp_client
from pydantic import Field

from compat_helpers import unique_id
from conftest import _start_rhizo, _stop_rhizo

JS_DIR = Path(__file__).resolve().parents[1] / "compat-js"


@pytest.fixture(scope="module")
def mcp_server_url(request):
    """A rhizo server started with ``--enable-mcp``."""
    if os.environ.get("HYPHA_SERVER_URL"):
        pytest.skip("needs a server started with --enable-mcp")
    server, stop, workdir = _start_rhizo(args=["--enable-mcp"])
    yield server.url
    _stop_rhizo(request, server, stop, workdir)


@pytest.fixture
async def mcp_connect(mcp_server_url):
    from hypha_rpc import connect_to_server

    clients = []

    async def _connect(**config):
        client = await asyncio.wait_for(
            connect_to_server({"server_url": mcp_server_url, **config}), 20
        )
        clients.append(client)
        return client

    yield _connect
    for c in reversed(clients):
        try:
            await asyncio.wait_for(c.disconnect(), 10)
        except BaseException:  # noqa: BLE001 - teardown must not mask the result
            pass


@schema_function
def add(a: int = Field(..., description="first addend"), b: int = Field(..., description="second addend")) -> int:
    """Add two integers."""
    return a + b


@schema_function
def fail(reason: str = Field(..., description="what goes wrong")) -> str:
    """Always raises."""
    raise RuntimeError(f"failed on purpose: {reason}")


@schema_function
def mul(a: float = Field(...), b: float = Field(...)) -> float:
    """Multiply."""
    return a * b


def unschema(x):
    return x


async def _calculator(connect, visibility="public"):
    prov = await connect(client_id=unique_id("mcp-prov"))
    await prov.register_service(
        {
            "id": "calc",
            "name": "Calculator",
            "description": "adds and multiplies",
            "config": {"visibility": visibility},
            "add": add,
            "fail": fail,
            "plain": unschema,
            "math": {"mul": mul},
            "docs": "Use add to add.",
            "greeting": "hello there",
        }
    )
    return prov


async def test_streamable_http_lists_and_calls_schema_functions(mcp_server_url, mcp_connect):
    prov = await _calculator(mcp_connect)
    ws = prov.config.workspace
    url = f"{mcp_server_url}/{ws}/mcp/calc/mcp"
    async with streamablehttp_client(url) as (read, write, _):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            assert init.serverInfo.name.endswith(":calc")
            assert init.capabilities.tools is not None
            tools = {t.name: t for t in (await session.list_tools()).tools}
            # Functions become tools, nested ones joined with `_`; schema functions keep
            # their schema, a plain function gets the one hypha-rpc derived from its
            # signature (its `service_schema`).
            assert set(tools) == {"add", "fail", "plain", "math_mul"}
            assert "x" in tools["plain"].inputSchema["properties"]
            assert tools["add"].description == "Add two integers."
            props = tools["add"].inputSchema["properties"]
            assert props["a"]["type"] == "integer"
            assert props["a"]["description"] == "first addend"
            assert sorted(tools["add"].inputSchema["required"]) == ["a", "b"]

            result = await session.call_tool("add", {"a": 2, "b": 40})
            assert not result.isError
            assert result.content[0].text == "42"
            result = await session.call_tool("math_mul", {"a": 1.5, "b": 4})
            assert float(result.content[0].text) == 6.0

            # The service's error and an unknown tool come back as error results.
            result = await session.call_tool("fail", {"reason": "boom"})
            assert result.isError
            assert "failed on purpose: boom" in result.content[0].text
            result = await session.call_tool("nope", {})
            assert result.isError
            assert "Tool 'nope' not found" in result.content[0].text

            resources = {str(r.uri): r for r in (await session.list_resources()).resources}
            assert set(resources) == {"resource://greeting", "resource://docs"}
            assert resources["resource://docs"].name == "Documentation for Calculator"
            read = await session.read_resource("resource://greeting")
            assert read.contents[0].text == "hello there"


async def test_sse_transport_serves_the_same_tools(mcp_server_url, mcp_connect):
    prov = await _calculator(mcp_connect)
    ws = prov.config.workspace
    url = f"{mcp_server_url}/{ws}/mcp/{prov.config.client_id}:calc/sse"
    async with sse_client(url, timeout=10) as (read, write):
        async with ClientSession(read, write) as session:
            await asyncio.wait_for(session.initialize(), 10)
            tools = {t.name for t in (await session.list_tools()).tools}
            assert tools == {"add", "fail", "plain", "math_mul"}
            result = await session.call_tool("add", {"a": 5, "b": 6})
            assert result.content[0].text == "11"
            read_res = await session.read_resource("resource://docs")
            assert read_res.contents[0].text == "Use add to add."


async def test_type_mcp_service_with_inline_tools_resources_and_prompts(mcp_server_url, mcp_connect):
    prov = await mcp_connect(client_id=unique_id("mcp-inline"))

    @schema_function
    def read_readme() -> str:
        """The readme."""
        return "README body"

    @schema_function
    def review(code: str = Field(..., description="code to review")) -> dict:
        """A review prompt."""
        return {
            "description": "Review",
            "messages": [{"role": "user", "content": {"type": "text", "text": f"Review: {code}"}}],
        }

    await prov.register_service(
        {
            "id": "inline",
            "type": "mcp",
            "config": {"visibility": "public"},
            "tools": {"add": add},
            "resources": {
                "readme": {
                    "uri": "resource://readme",
                    "name": "Readme",
                    "description": "the readme",
                    "mime_type": "text/markdown",
                    "read": read_readme,
                }
            },
            "prompts": {"review": {"name": "review", "description": "review code", "read": review}},
        }
    )
    ws = prov.config.workspace
    async with streamablehttp_client(f"{mcp_server_url}/{ws}/mcp/inline/mcp") as (read, write, _):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            assert init.capabilities.prompts is not None
            assert [t.name for t in (await session.list_tools()).tools] == ["add"]
            assert (await session.call_tool("add", {"a": 1, "b": 2})).content[0].text == "3"
            res = (await session.list_resources()).resources
            assert [(str(r.uri), r.mimeType) for r in res] == [("resource://readme", "text/markdown")]
            body = await session.read_resource("resource://readme")
            assert body.contents[0].text == "README body"
            prompts = (await session.list_prompts()).prompts
            assert prompts[0].name == "review"
            assert prompts[0].arguments[0].name == "code" and prompts[0].arguments[0].required
            got = await session.get_prompt("review", {"code": "x = 1"})
            assert got.messages[0].content.text == "Review: x = 1"


async def test_native_mcp_functions_answer_the_protocol(mcp_server_url, mcp_connect):
    prov = await mcp_connect(client_id=unique_id("mcp-native"))

    def list_tools():
        return [{"name": "echo", "description": "echo", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}]

    def call_tool(name, arguments):
        return [{"type": "text", "text": f"{name}:{arguments['text']}"}]

    await prov.register_service(
        {
            "id": "native",
            "type": "mcp",
            "config": {"visibility": "public"},
            "list_tools": list_tools,
            "call_tool": call_tool,
        }
    )
    ws = prov.config.workspace
    async with streamablehttp_client(f"{mcp_server_url}/{ws}/mcp/native/mcp") as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            assert [t.name for t in (await session.list_tools()).tools] == ["echo"]
            out = await session.call_tool("echo", {"text": "hi"})
            assert out.content[0].text == "echo:hi"


async def test_type_mcp_service_without_mcp_structure_is_refused(mcp_server_url, mcp_connect):
    prov = await mcp_connect(client_id=unique_id("mcp-bad"))
    await prov.register_service(
        {"id": "bad", "type": "mcp", "config": {"visibility": "public"}, "add": add}
    )
    ws = prov.config.workspace
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(
            f"{mcp_server_url}/{ws}/mcp/bad/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream"},
        )
    assert r.status_code == 400, r.text
    assert "not MCP compatible" in r.json()["error"]


async def test_callers_token_decides_access(mcp_server_url, mcp_connect):
    prov = await _calculator(mcp_connect, visibility="protected")
    ws = prov.config.workspace
    url = f"{mcp_server_url}/{ws}/mcp/calc/mcp"
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    accept = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(timeout=10) as http:
        # Anonymous: the protected service is invisible.
        r = await http.post(url, json=request, headers=accept)
        assert r.status_code == 404, r.text
        assert "not found or not accessible" in r.json()["error"]
        r = await http.get(f"{mcp_server_url}/{ws}/mcp/calc")
        assert r.status_code == 404, r.text
        # A forged token is refused outright.
        r = await http.post(url, json=request, headers={**accept, "Authorization": "Bearer forged.token.value"})
        assert r.status_code in (401, 403), r.text
    # A token of the workspace sees it, through the real client.
    token = await prov.generate_token({"permission": "read"})
    async with streamablehttp_client(url, headers={"Authorization": f"Bearer {token}"}) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            assert "add" in {t.name for t in (await session.list_tools()).tools}
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(f"{mcp_server_url}/{ws}/mcp/calc", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        info = r.json()
        assert info["endpoints"]["streamable_http"] == f"/{ws}/mcp/calc/mcp"
        assert {t["name"] for t in info["capabilities"]["tools"]} == {"add", "fail", "plain", "math_mul"}
        assert info["summary"]["tools_count"] == 4


async def test_bad_requests_get_clear_errors(mcp_server_url, mcp_connect):
    prov = await _calculator(mcp_connect)
    ws = prov.config.workspace
    url = f"{mcp_server_url}/{ws}/mcp/calc/mcp"
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=20) as http:
        # Malformed JSON: a JSON-RPC parse error, not a crash.
        r = await http.post(url, content=b"{not json", headers=accept)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == -32700
        # An unknown method: JSON-RPC -32601.
        r = await http.post(url, json={"jsonrpc": "2.0", "id": 7, "method": "no/such"}, headers=accept)
        body = r.json()
        assert body["error"]["code"] == -32601, body
        # An oversized body: 413.
        big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"x": "a" * (17 * 1024 * 1024)}})
        r = await http.post(url, content=big.encode(), headers=accept)
        assert r.status_code == 413, r.status_code
        # Unknown services and missing ids.
        r = await http.post(f"{mcp_server_url}/{ws}/mcp/nope/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=accept)
        assert r.status_code == 404
        r = await http.get(f"{mcp_server_url}/{ws}/mcp/")
        assert r.status_code == 404 and "service ID required" in r.json()["error"]
        r = await http.get(f"{mcp_server_url}/{ws}/mcp", follow_redirects=False)
        assert r.status_code == 301 and r.headers["location"] == f"/{ws}/mcp/"
        # SSE messages into a session that does not exist.
        r = await http.post(f"{mcp_server_url}/{ws}/mcp/calc/sse/messages/?session_id=deadbeef", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert r.status_code == 404
    # The service still works after all of that.
    async with streamablehttp_client(url) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            assert (await session.call_tool("add", {"a": 1, "b": 1})).content[0].text == "2"


async def test_mcp_routes_are_off_without_the_flag(server_url, connect):
    prov = await _calculator(connect)
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(
            f"{server_url}/{prov.config.workspace}/mcp/calc/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        )
    assert r.status_code in (404, 405), r.status_code


@pytest.mark.timeout_s(90)
async def test_service_of_a_javascript_client(mcp_server_url):
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "hypha-rpc").is_dir():
        message = "Node.js and `npm ci` in tests/compat-js are needed (tests/run.sh installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    env = dict(os.environ, RHIZO_URL=mcp_server_url)
    proc = await asyncio.create_subprocess_exec(
        node,
        str(JS_DIR / "mcp-provider.mjs"),
        cwd=JS_DIR,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.PIPE,
    )
    try:
        # hypha-rpc logs to stdout too; the provider's line starts with READY.
        line = ""
        while not line.startswith("READY "):
            raw = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert raw, "the JavaScript provider exited before it was ready"
            line = raw.decode().strip()
        ws = line.split()[1]
        url = f"{mcp_server_url}/{ws}/mcp/js-calc/mcp"
        async with streamablehttp_client(url) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = {t.name: t for t in (await session.list_tools()).tools}
                assert "add" in tools, tools
                assert tools["add"].inputSchema["properties"]["a"]["type"] == "number"
                out = await session.call_tool("add", {"a": 20, "b": 22})
                assert out.content[0].text == "42"
    finally:
        if proc.returncode is None:
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()


async def test_sse_session_is_reaped_when_its_stream_closes(mcp_server_url, mcp_connect):
    prov = await _calculator(mcp_connect)
    ws = prov.config.workspace
    base = f"{mcp_server_url}/{ws}/mcp/calc/sse"
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with httpx.AsyncClient(timeout=10) as http:
        async with http.stream("GET", base) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            event = data = None
            while data is None:
                line = await asyncio.wait_for(lines.__anext__(), 10)
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    data = line.split(":", 1)[1].strip()
            assert event == "endpoint"
            assert data.startswith(f"/{ws}/mcp/calc/sse/messages/?session_id=")
            endpoint = f"{mcp_server_url}{data}"
            # The session takes messages while its stream is open...
            r = await http.post(endpoint, json=ping)
            assert r.status_code == 202, r.text
            # ...and a body that is not JSON-RPC is refused without ending it.
            r = await http.post(endpoint, content=b"[1, 2")
            assert r.status_code == 400 and "Could not parse message" in r.json()["error"]
            r = await http.post(endpoint, json=ping)
            assert r.status_code == 202, r.text
        # The stream is closed: the session is gone.
        for _ in range(50):
            r = await http.post(endpoint, json=ping)
            if r.status_code == 404:
                break
            await asyncio.sleep(0.1)
        assert r.status_code == 404, r.text
