"""A typed service of the Rust SDK (``rhizo-client``) called by a Python hypha-rpc client,
and a Python service called through the SDK's typed proxy.

The service is ``client/examples/service.rs`` (``calc`` with ``add(a, b)``, public), run as
a subprocess against the server under test; it prints its full service id. Python sees the
function's schema (``svc.add.__schema__``, from the Rust argument type through
``schemars``), calls it positionally and with keyword arguments, gets a clear error for
bad arguments, and finds the schema in ``get_service_info``, the agent-skills page and the
MCP endpoint. The other way round, ``client/examples/caller.rs`` calls a Python
``add`` positionally and with keyword arguments.

Streams both ways: Python iterates the typed Rust generator ``count(n)`` of
``client/examples/stream.rs`` (``async for i in await svc.count(n=3)``), and
``client/examples/stream_caller.rs`` iterates a Python async generator ``count(n)``
through the SDK's ``call_stream``.

The example binaries are built by ``cargo build -p rhizo-client --examples`` (tests/run.sh
does so); they are looked up next to ``RHIZO_BIN`` (``<dir>/examples/<name>``), then under
``$CARGO_TARGET_DIR`` and ``target/``; the tests skip with a message when it is missing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from conftest import REPO, _binary_path, _start_rhizo, _stop_rhizo

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("HYPHA_SERVER_URL")),
    reason="the Rust SDK example is checked against rhizo only",
)


def _example_binary(name: str) -> Path:
    """The example binary ``name``; skips the test when it has not been built (fails under
    CI, where tests/run.sh builds it)."""
    candidates = [_binary_path().parent / "examples" / name]
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "debug" / "examples" / name)
    candidates.append(REPO / "target" / "debug" / "examples" / name)
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        message = (
            f"Rust SDK example binary `{name}` not found; build it with "
            "`cargo build -p rhizo-client --examples` (looked next to RHIZO_BIN, under "
            "$CARGO_TARGET_DIR and target/)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


async def _run_caller(binary: Path, server_url: str, service_id: str) -> bytes:
    """Runs a caller example against ``service_id`` to completion; its stdout (fails on a
    non-zero exit, with its stderr)."""
    proc = await asyncio.create_subprocess_exec(
        str(binary),
        server_url,
        service_id,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")
    return out


async def _start_example(server_url: str, name: str = "service"):
    binary = _example_binary(name)
    proc = await asyncio.create_subprocess_exec(
        str(binary),
        server_url,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("the Rust example did not print its service id within 20 s")
    sid = line.decode().strip()
    if not sid:
        err = (await proc.stderr.read()).decode(errors="replace")
        await proc.wait()
        raise AssertionError(f"the Rust example exited without a service id: {err}")
    return proc, sid


async def _stop_example(proc) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def rust_calc(server_url):
    proc, sid = await _start_example(server_url)
    yield sid
    await _stop_example(proc)


async def test_python_calls_a_typed_rust_service(connect, rust_calc):
    client = await connect()
    svc = await client.get_service(rust_calc)
    schema = svc.add.__schema__
    assert schema["name"] == "add"
    assert schema["description"] == "Add two numbers."
    params = schema["parameters"]
    assert params["type"] == "object"
    props = params["properties"]
    assert set(props) == {"a", "b"}
    assert props["a"]["type"] == "integer"
    assert props["a"]["description"] == "The first number."
    assert sorted(params["required"]) == ["a", "b"]
    assert svc.add.__doc__ == "Add two numbers."

    assert await svc.add(2, 3) == 5
    assert await svc.add(a=10, b=-4) == 6
    assert await svc.add(1, b=41) == 42
    assert await svc.add({"a": 1, "b": 1}) == 2

    with pytest.raises(Exception, match=r"TypeError: add\(\) invalid arguments: invalid type"):
        await svc.add("x", 2)
    with pytest.raises(Exception, match="missing field `b`"):
        await svc.add(a=1)
    with pytest.raises(Exception, match=r"add\(\) takes 2 positional arguments but 3 were given"):
        await svc.add(1, 2, 3)


async def test_the_schema_is_in_the_record_and_the_skills_page(connect, server_url, rust_calc):
    client = await connect()
    info = await client.get_service_info(rust_calc)
    entry = info["service_schema"]["add"]
    assert entry["type"] == "function"
    assert set(entry["function"]["parameters"]["properties"]) == {"a", "b"}
    assert info["description"] == "A calculator written in Rust."

    ws = rust_calc.split("/", 1)[0]
    async with httpx.AsyncClient(timeout=15) as http:
        page = await http.get(f"{server_url}/{ws}/agent-skills/services/calc.md")
    assert page.status_code == 200, page.text
    assert "add(a, b)" in page.text
    assert "The first number." in page.text


@pytest.fixture(scope="module")
def mcp_server_url(request):
    """A rhizo server started with ``--enable-mcp``."""
    server, stop, workdir = _start_rhizo(args=["--enable-mcp"])
    yield server.url
    _stop_rhizo(request, server, stop, workdir)


async def test_mcp_lists_and_calls_the_rust_function(mcp_server_url):
    proc, sid = await _start_example(mcp_server_url)
    try:
        ws, rest = sid.split("/", 1)
        url = f"{mcp_server_url}/{ws}/mcp/{rest}/mcp"
        accept = {"Accept": "application/json, text/event-stream"}
        async with httpx.AsyncClient(timeout=15) as http:
            r = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=accept)
            assert r.status_code == 200, r.text
            tools = r.json()["result"]["tools"]
            assert [t["name"] for t in tools] == ["add"]
            assert tools[0]["description"] == "Add two numbers."
            assert set(tools[0]["inputSchema"]["properties"]) == {"a", "b"}
            call = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "add", "arguments": {"a": 4, "b": 5}},
            }
            r = await http.post(url, json=call, headers=accept)
            assert r.status_code == 200, r.text
            assert r.json()["result"]["content"][0]["text"] == "9"
    finally:
        await _stop_example(proc)


async def test_the_rust_caller_calls_a_python_service(connect, server_url):
    binary = _example_binary("caller")
    client = await connect()

    def add(a, b):
        return a + b

    info = await client.register_service(
        {"id": "calc", "config": {"visibility": "public"}, "add": add}
    )
    out = await _run_caller(binary, server_url, info.id)
    assert out.decode().strip() == "add(2, 3) = 5, add(a=2, b=3) = 5"


async def test_python_iterates_a_rust_generator(connect, server_url):
    proc, sid = await _start_example(server_url, "stream")
    try:
        client = await connect()
        svc = await client.get_service(sid)
        schema = svc.count.__schema__
        assert schema["description"] == "Count from 0 up to n."
        assert schema["parameters"]["properties"]["n"]["type"] == "integer"
        assert [i async for i in await svc.count(n=3)] == [0, 1, 2]
        assert [i async for i in await svc.count(0)] == []
        # Stopping early closes the Rust generator; the service goes on serving.
        seen = []
        async for i in await svc.count(n=1000):
            seen.append(i)
            if len(seen) == 2:
                break
        assert seen == [0, 1]
        assert [i async for i in await svc.count(n=2)] == [0, 1]
        with pytest.raises(Exception, match=r"count\(\) invalid arguments"):
            await svc.count(n="x")
    finally:
        await _stop_example(proc)


async def test_the_rust_caller_iterates_a_python_generator(connect, server_url):
    binary = _example_binary("stream_caller")
    client = await connect()

    async def count(n):
        for i in range(n):
            yield i

    info = await client.register_service(
        {"id": "counter", "config": {"visibility": "public"}, "count": count}
    )
    out = await _run_caller(binary, server_url, info.id)
    assert out.decode().strip() == "count(n=3) = [0, 1, 2]"
