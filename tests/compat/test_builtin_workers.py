"""The built-in workers `rhizo serve` starts (apps-workers.md §4.1–4.2): python-eval runs an
app's script with real Python and only the HYPHA_* variables; terminal runs a real shell in
a PTY. Both driven through ``public/server-apps`` by the real hypha-rpc client."""

from __future__ import annotations

import ast

import pytest

from compat_helpers import expect_error

SCRIPT = r'''
import asyncio, os, sys
from hypha_rpc import connect_to_server

async def main():
    server = await connect_to_server({
        "server_url": os.environ["HYPHA_SERVER_URL"],
        "workspace": os.environ["HYPHA_WORKSPACE"],
        "client_id": os.environ["HYPHA_CLIENT_ID"],
        "token": os.environ["HYPHA_TOKEN"],
    })
    await server.register_service({"id": "default", "name": "Eval App", "config": {"visibility": "public"}, "setup": lambda: None})
    print("ENV", sorted(os.environ))
    print("to stderr", file=sys.stderr)
    await server.disconnect()

asyncio.run(main())
'''


async def test_python_eval_runs_the_script_with_only_the_hypha_variables(apps_user):
    u = await apps_user()
    workers = await u.controller.list_workers("python-eval")
    assert any(w["id"].startswith("public/") for w in workers), workers
    app = await u.controller.install(
        source=SCRIPT,
        manifest={"name": "Eval", "type": "python-eval", "version": "0.1.0", "entry_point": "main.py"},
        overwrite=True,
    )
    assert app["entry_point"] == "main.py"
    session = await u.controller.start(app["id"])
    assert session["worker_id"].startswith("public/")
    logs = await u.controller.get_logs(session["id"])
    text = {i["type"]: i["content"] for i in logs["items"]}
    env_line = next(line for line in text["stdout"].splitlines() if line.startswith("ENV "))
    names = set(ast.literal_eval(env_line[4:]))
    # LC_CTYPE is Python's own locale coercion (PEP 538) in an environment without a locale.
    assert names - {"LC_CTYPE"} == {"HYPHA_CLIENT_ID", "HYPHA_SERVER_URL", "HYPHA_TOKEN", "HYPHA_WORKSPACE"}, logs
    assert "to stderr" in text["stderr"]
    assert "return code: 0" in text["info"]
    only_out = await u.controller.get_logs(session["id"], type="stdout")
    assert [i["type"] for i in only_out["items"]] == ["stdout"] and only_out["total"] == 1
    # The script has finished: the record says so and keeps the logs.
    info = await u.controller.get_session_info(session["id"])
    assert info["status"] == "stopped" and "stdout" in info["logs"]


async def test_python_eval_reports_a_failing_script(apps_user):
    u = await apps_user()
    err = await expect_error(
        u.controller.install(
            source="raise SystemExit('boom: the script failed')",
            manifest={"name": "Bad", "type": "python-eval", "version": "0.1.0", "entry_point": "main.py"},
            app_id="bad-eval",
            timeout=10,
        ),
        timeout=30,
    )
    assert "Failed to install app 'bad-eval'" in str(err)
    assert "boom: the script failed" in str(err), str(err)


@pytest.mark.timeout_s(60)
async def test_a_terminal_app_runs_commands_in_a_real_shell_and_keeps_its_state(apps_user):
    u = await apps_user()
    app = await u.controller.install(
        manifest={"name": "Shell", "type": "terminal", "version": "0.1.0", "startup_command": "/bin/bash --norc --noprofile"},
        wait_for_service=False,
        overwrite=True,
    )
    session = await u.controller.start(app["id"], wait_for_service=False)
    sid = session["id"]
    out = await u.controller.execute(sid, "echo hello-from-$((40+2))", {"timeout": 10})
    assert out["status"] == "ok", out
    text = "".join(o.get("text", "") for o in out["outputs"] if o.get("name") == "stdout")
    assert "hello-from-42" in text, out
    await u.controller.execute(sid, "cd /tmp && export RHIZO_T=kept", {"timeout": 10})
    out = await u.controller.execute(sid, "pwd; echo $RHIZO_T", {"timeout": 10})
    text = "".join(o.get("text", "") for o in out["outputs"] if o.get("name") == "stdout")
    assert "/tmp" in text and "kept" in text, out
    logs = await u.controller.get_logs(sid)
    assert logs["total"] >= 1
    await u.controller.stop(sid)
    assert await u.controller.list_running() == []
    err = await expect_error(u.controller.execute(sid, "echo x"))
    assert "not found" in str(err)


async def test_the_terminal_worker_streams_a_command_s_output_as_a_remote_generator(apps_user):
    u = await apps_user()
    app = await u.controller.install(
        manifest={"name": "Stream", "type": "terminal", "version": "0.1.0", "startup_command": "/bin/bash --norc --noprofile"},
        wait_for_service=False,
        overwrite=True,
    )
    session = await u.controller.start(app["id"], wait_for_service=False)
    sid = session["id"]
    worker = await u.api.get_service(session["worker_id"])
    items = [i async for i in await worker.execute_stream(sid, "for i in 1 2 3; do echo line-$i; sleep 0.2; done", {"timeout": 20})]
    assert items[-1] == {"type": "complete", "status": "ok"}, items
    text = "".join(i["data"] for i in items if i["type"] == "output")
    for n in (1, 2, 3):
        assert f"line-{n}" in text, items
    assert len([i for i in items if i["type"] == "output"]) >= 2, "output arrives in chunks as it comes"
    # A command that shows no prompt in time: an error item, then complete with "timeout".
    items = [i async for i in await worker.execute_stream(sid, "sleep 5", {"timeout": 1})]
    assert items[-1] == {"type": "complete", "status": "timeout"}, items
    assert items[-2]["type"] == "error" and "no prompt" in items[-2]["message"], items
    # Stopping early is fine; the session stays usable.
    await u.controller.execute(sid, "\x03", {"timeout": 3})
    gen = await worker.execute_stream(sid, "yes | head -n 2000", {"timeout": 20})
    first = await gen.__anext__()
    assert first["type"] == "output"
    await gen.aclose()
    out = await u.controller.execute(sid, "echo still-$((1+1))", {"timeout": 10})
    assert "still-2" in "".join(o.get("text", "") for o in out["outputs"]), out
    await u.controller.stop(sid)


SERVING_SCRIPT = r'''
import asyncio, os
from hypha_rpc import connect_to_server

async def main():
    server = await connect_to_server({
        "server_url": os.environ["HYPHA_SERVER_URL"],
        "workspace": os.environ["HYPHA_WORKSPACE"],
        "client_id": os.environ["HYPHA_CLIENT_ID"],
        "token": os.environ["HYPHA_TOKEN"],
    })
    await server.register_service({"id": "default", "config": {"visibility": "public"}, "setup": lambda: None})
    await server.register_service({"id": "calc", "config": {"visibility": "public"}, "add": lambda a, b: a + b})
    await server.serve()

asyncio.run(main())
'''


@pytest.mark.timeout_s(60)
async def test_a_serving_python_eval_app_is_started_lazily_and_stopped(apps_user):
    u = await apps_user()
    app = await u.controller.install(
        source=SERVING_SCRIPT,
        manifest={"name": "Calc", "type": "python-eval", "version": "0.1.0", "entry_point": "main.py", "wait_for_exit": False},
        overwrite=True,
    )
    assert f"{u.ws}/*:calc" in [s["id"] for s in app["services"]]
    assert await u.controller.list_running() == []
    calc = await u.api.get_service(f"calc@{app['id']}")
    assert await calc.add(2, 3) == 5
    running = await u.controller.list_running()
    assert len(running) == 1 and running[0]["status"] == "running"
    await u.controller.stop(running[0]["id"])
    err = await expect_error(calc.add(1, 1), timeout=20)
    assert err is not None


@pytest.mark.timeout_s(120)
async def test_a_daemon_app_starts_again_when_the_server_restarts(is_external, tmp_path):
    """Installed apps persist (SQLite and the artifact files in the data directory); a
    daemon app runs again after a restart, on the built-in python-eval worker."""
    from hypha_rpc import connect_to_server

    from artifact_helpers import user_token
    from compat_helpers import eventually, unique_id
    from conftest import TEST_JWT_SECRET, _free_port, _start_rhizo

    if is_external:
        pytest.skip("restarts the server it starts")
    port = _free_port()
    user = unique_id("daemon").lower()
    ws = f"ws-user-{user}"
    token = user_token(user, ws, TEST_JWT_SECRET)
    server, stop, workdir = _start_rhizo(port=port, workdir=tmp_path)
    try:
        api = await connect_to_server({"server_url": server.url, "workspace": ws, "token": token})
        ctl = await api.get_service("public/server-apps")
        app = await ctl.install(
            source=SERVING_SCRIPT,
            manifest={"name": "Calc daemon", "type": "python-eval", "version": "0.1.0", "entry_point": "main.py",
                      "wait_for_exit": False, "daemon": True},
            app_id="calc-daemon",
        )
        running = await eventually(lambda: _one_running(ctl), timeout=30)
        assert running["daemon"] is True
        await api.disconnect()
    finally:
        stop()
    server, stop, workdir = _start_rhizo(port=port, workdir=tmp_path)
    try:
        api = await connect_to_server({"server_url": server.url, "workspace": ws, "token": token})
        ctl = await api.get_service("public/server-apps")
        running = await eventually(lambda: _one_running(ctl), timeout=30)
        assert running["app_id"] == app["id"]
        calc = await api.get_service(f"{running['id']}:calc")
        assert await calc.add(20, 22) == 42
        await api.disconnect()
    finally:
        stop()


async def _one_running(ctl):
    running = await ctl.list_running()
    assert len(running) == 1 and running[0]["status"] == "running", running
    return running[0]
