"""A server restart (SIGTERM, start again on the same port and data directory): clients
of both hypha-rpc packages reconnect with their reconnection tokens, re-register their
services in the same workspaces, and can be called again (protocol.md §1.7, §6.4)."""

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from hypha_rpc import connect_to_server

from compat_helpers import eventually, unique_id
from conftest import _free_port, _start_rhizo, _stop_rhizo

JS_DIR = Path(__file__).resolve().parents[1] / "compat-js"

# A JavaScript client that registers `js-sticky`, prints its workspace, then stays
# connected (reconnecting as needed) until stdin closes.
JS_CLIENT = """
import { hyphaWebsocketClient } from "hypha-rpc";
import WebSocket from "ws";
globalThis.WebSocket = globalThis.WebSocket || WebSocket;
const c = await hyphaWebsocketClient.connectToServer({ server_url: process.env.RHIZO_URL });
await c.registerService({ id: "js-sticky", config: { visibility: "public" }, f: () => "js still here" });
console.log("READY " + c.config.workspace);
process.stdin.resume();
process.stdin.on("end", async () => { await c.disconnect(); process.exit(0); });
"""


@pytest.mark.timeout_s(90)
async def test_clients_reconnect_after_a_restart(request, is_external, tmp_path):
    if is_external:
        pytest.skip("restarts the server it starts")
    node = shutil.which("node")
    js_ready = node is not None and (JS_DIR / "node_modules" / "hypha-rpc").is_dir()
    if not js_ready and os.environ.get("CI"):
        pytest.fail("Node.js and `npm ci` in tests/compat-js are needed (tests/run.sh installs them)")

    port = _free_port()
    server, stop, workdir = _start_rhizo(port=port, workdir=tmp_path)
    url = server.url
    py = await asyncio.wait_for(connect_to_server({"server_url": url, "client_id": unique_id("sticky")}), 20)
    await py.register_service({"id": "py-sticky", "config": {"visibility": "public"}, "f": lambda: "py still here"})
    js_proc = None
    js_ws = None
    try:
        if js_ready:
            script = JS_DIR / f".restart-client-{os.getpid()}.mjs"
            script.write_text(JS_CLIENT)
            request.addfinalizer(lambda: script.unlink(missing_ok=True))
            js_proc = await asyncio.create_subprocess_exec(
                node,
                str(script),
                cwd=JS_DIR,
                env={**os.environ, "RHIZO_URL": url},
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            while js_ws is None:
                line = await asyncio.wait_for(js_proc.stdout.readline(), 20)
                assert line, "the JavaScript client exited before it was ready"
                if line.startswith(b"READY "):
                    js_ws = line.split()[1].decode()

        stop()  # SIGTERM: clients get 1001 and start reconnecting
        server, stop, _ = _start_rhizo(port=port, workdir=tmp_path)

        async def call(service_id):
            probe = await asyncio.wait_for(connect_to_server({"server_url": url}), 10)
            try:
                svc = await probe.get_service(service_id)
                return await svc.f()
            finally:
                await probe.disconnect()

        async def py_back():
            assert await call(f"{py.config.workspace}/py-sticky") == "py still here"

        await eventually(py_back, timeout=30)
        if js_ws:

            async def js_back():
                assert await call(f"{js_ws}/js-sticky") == "js still here"

            await eventually(js_back, timeout=30)
    finally:
        if js_proc is not None:
            js_proc.stdin.close()
            try:
                await asyncio.wait_for(js_proc.wait(), 10)
            except asyncio.TimeoutError:
                js_proc.kill()
        await py.disconnect()
        _stop_rhizo(request, server, stop, workdir)
