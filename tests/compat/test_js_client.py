"""The real hypha-rpc npm client against the server under test (tests/compat-js/).

Runs ``node --test`` on tests/compat-js with RHIZO_URL set, while a Python client serves
``py-interop`` so that the JavaScript tests can call into Python and back. Needs Node.js
and ``npm ci`` in tests/compat-js (tests/run.sh does both)."""

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from compat_helpers import unique_id

JS_DIR = Path(__file__).resolve().parents[1] / "compat-js"


@pytest.mark.timeout_s(120)
async def test_npm_client_suite(server_url, connect):
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "hypha-rpc").is_dir():
        message = "Node.js and `npm ci` in tests/compat-js are needed (tests/run.sh installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)

    py = await connect(client_id=unique_id("py-interop"))

    async def call_js(service_id, x):
        js = await py.get_service(service_id)
        return await js.double(x)

    await py.register_service(
        {
            "id": "py-interop",
            "config": {"visibility": "public"},
            "echo": lambda x: x,
            "call_js": call_js,
        }
    )
    env = dict(os.environ)
    env["RHIZO_URL"] = server_url
    env["PY_SERVICE"] = f"{py.config.workspace}/py-interop"
    proc = await asyncio.create_subprocess_exec(
        node,
        "--test",
        "--test-reporter=tap",
        # hypha-rpc 0.21.40 starts a chunked call's 30 s timer after the upload finishes;
        # when the reply beats the `process` acknowledgement the timer outlives the call
        # and would keep node alive for 30 s after the last test.
        "--test-force-exit",
        str(JS_DIR / "client.test.mjs"),
        cwd=JS_DIR,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 100)
    except asyncio.TimeoutError:
        proc.kill()
        raise AssertionError("the npm client suite hung for 100 s")
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"node --test failed:\n{text}"
    assert "# fail 0" in text and "# pass 15" in text, text
