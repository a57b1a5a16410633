"""The worker examples of seeds 000 and 001 (tests/compat/seed_workers/, copied as written
except for the server URL and credentials) and seed 002's python-eval example, run against
the server through ``public/server-apps`` with the real hypha-rpc client."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

SEED_002_SOURCE = '''
    import os
    import time
    
    print(f"Hello from Python eval at {time.strftime('%Y-%m-%d %H:%M:%S')}")
    print(f"Workspace: {os.environ.get('HYPHA_WORKSPACE', 'unknown')}")
    print(f"App ID: {os.environ.get('HYPHA_APP_ID', 'unknown')}")
    
    # This is a simple Python script that runs and exits
    result = 42 * 2
    print(f"Calculation result: {result}")
    '''


@pytest.mark.timeout_s(60)
@pytest.mark.parametrize("script,marker", [
    # Seed 000's worker registers a service without an "id": hypha-rpc itself refuses that
    # before anything reaches a server ("Service id not found"), with any server.
    pytest.param("worker_000.py", "Python worker registered:", marks=pytest.mark.xfail(
        strict=True, raises=AssertionError, reason="the seed's service has no id; hypha-rpc refuses it client-side")),
    ("worker_001_functions.py", "Simple worker registered:"),
])
async def test_a_seed_python_worker_runs_an_app(apps_user, script, marker):
    u = await apps_user("seedworker")
    env = dict(os.environ, SEED_SERVER_URL=u.url, SEED_TOKEN=u.token, SEED_WORKSPACE=u.ws)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-u", str(HERE / "seed_workers" / script), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        line, seen = b"", []
        while marker.encode() not in line:
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            seen.append(line.decode(errors="replace"))
            assert line, "the worker exited before registering:\n" + "".join(seen)[-3000:]
        worker_id = line.decode().split("registered:")[1].strip()
        assert worker_id.startswith(f"{u.ws}/")
        app = await u.controller.install(
            manifest={"name": "Seed Task", "type": "simple-task", "version": "1.0.0"},
            source="do it", wait_for_service=False,
        )
        session = await u.controller.start(app["id"], wait_for_service=False)
        assert session["worker_id"] == worker_id
        logs = await u.controller.get_logs(session["id"])
        assert logs == {"log": [f"Session {session['id']} started"], "error": []}, logs
        await u.controller.stop(session["id"])
        assert await u.controller.list_running() == []
    finally:
        try:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
        except ProcessLookupError:
            pass  # it has exited already (the seed 000 worker does, refused by hypha-rpc)
        except asyncio.TimeoutError:
            proc.kill()


async def test_seed_002_python_eval_example(apps_user):
    u = await apps_user()
    app_info = await u.controller.install(
        source=SEED_002_SOURCE,
        app_id="python-calculation-script",
        manifest={"name": "Python Eval Example", "type": "python-eval", "version": "1.0.0", "entry_point": "main.py"},
        overwrite=True,
    )
    session = await u.controller.start(app_info.id)
    logs = await u.controller.get_logs(session["id"], type="stdout")
    out = logs["items"][0]["content"]
    assert "Hello from Python eval" in out and f"Workspace: {u.ws}" in out and "Calculation result: 84" in out
