"""Seed 001's JavaScript worker (tests/compat-js/simple-worker.mjs, the real npm
hypha-rpc client under Node.js) runs apps installed through ``public/server-apps``."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

JS_DIR = Path(__file__).resolve().parents[1] / "compat-js"


@pytest.mark.timeout_s(60)
async def test_the_seed_javascript_worker_runs_an_app(apps_user):
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "hypha-rpc").is_dir():
        message = "Node.js and `npm ci` in tests/compat-js are needed (tests/run.sh installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    u = await apps_user("jsworker")
    env = dict(os.environ, RHIZO_URL=u.url, RHIZO_TOKEN=u.token, RHIZO_WORKSPACE=u.ws)
    proc = await asyncio.create_subprocess_exec(
        node, str(JS_DIR / "simple-worker.mjs"), cwd=JS_DIR, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        line = b""
        while b"Simple worker registered:" not in line:
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert line, "the worker exited before registering"
        worker_id = line.decode().split("registered:")[1].strip()
        assert worker_id.startswith(f"{u.ws}/")
        app = await u.controller.install(
            manifest={"name": "JS Task", "type": "javascript-simple", "version": "1.0.0"},
            source="console.log('hi')",
            wait_for_service=False,
        )
        session = await u.controller.start(app["id"], wait_for_service=False)
        assert session["worker_id"] == worker_id
        logs = await u.controller.get_logs(session["id"])
        assert logs == {"log": [f"Session {session['id']} started"], "error": []}, logs
        typed = await u.controller.get_logs(session["id"], type="log")
        assert typed == [f"Session {session['id']} started"], typed
        await u.controller.stop(session["id"])
        assert await u.controller.list_running() == []
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except asyncio.TimeoutError:
            proc.kill()
