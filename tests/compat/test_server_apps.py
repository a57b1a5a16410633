"""Server apps with workers that clients plug in (apps-workers.md §1, §3; seeds 000–002):
install, start, list, logs, execute, stop, lazy start, inactivity stop, failing and
departing workers, progress callbacks and permissions, driven by the real hypha-rpc client
through ``public/server-apps``."""

from __future__ import annotations

import asyncio

import pytest
from hypha_rpc import connect_to_server

from apps_helpers import FunctionWorker, wait_until
from compat_helpers import expect_error, unique_id


async def _worker(apps_user, u, types, **kw) -> FunctionWorker:
    w = FunctionWorker(u.url, types, **kw)
    await w.register(await apps_user.client(u))
    return w


async def test_a_function_worker_runs_an_app_installed_and_started_through_the_controller(apps_user):
    u = await apps_user()
    w = await _worker(apps_user, u, ["simple-task", "custom-type"])
    app = await u.controller.install(
        manifest={"name": "Simple Task", "type": "simple-task", "version": "1.0.0", "entry_point": "main.txt"},
        source="do the simple task",
        wait_for_service=False,
        overwrite=True,
    )
    app_id = app["id"]
    assert app["type"] == "simple-task" and app["source_hash"].startswith("Qm")
    assert w.stopped, "install test-starts the app once and stops it"
    assert app_id in [a["id"] for a in await u.controller.list_apps()]

    session = await u.controller.start(app_id, wait_for_service=False)
    sid = session["id"]
    assert sid.startswith(f"{u.ws}/_rapp_") and sid.endswith("__rlb")
    assert session["app_id"] == app_id and session["worker_id"] == w.service.id
    config = w.configs[-1]
    for key in ("id", "app_id", "workspace", "client_id", "server_url", "token", "entry_point", "artifact_id", "manifest"):
        assert key in config, key
    assert config["workspace"] == u.ws and config["artifact_id"] == f"{u.ws}/{app_id}"
    assert config["manifest"]["type"] == "simple-task" and config["entry_point"] == "main.txt"
    assert config["app_files_base_url"].endswith(f"/{u.ws}/artifacts/{app_id}/files")
    running = await u.controller.list_running()
    assert [s["id"] for s in running] == [sid]
    # Plain apps are one instance per workspace: a second start returns the running one.
    again = await u.controller.start(app_id, wait_for_service=False)
    assert again["id"] == sid

    logs = await u.controller.get_logs(sid)
    assert logs == {"log": [f"Session {sid} started"], "error": []}, "the seed worker's legacy shape"
    assert (await u.controller.get_session_info(sid))["app_id"] == app_id
    result = await u.controller.execute(sid, "print(1)")
    assert result["status"] == "ok" and result["outputs"][0]["text"] == "PRINT(1)"

    await u.controller.stop(sid)
    assert sid in w.stopped and sid not in w.sessions
    assert await u.controller.list_running() == []
    err = await expect_error(u.controller.stop(sid))
    assert "Server app instance not found" in str(err)
    await u.controller.stop(sid, raise_exception=False)

    await u.controller.uninstall(app_id)
    assert app_id not in [a["id"] for a in await u.controller.list_apps()]


async def test_an_app_that_registers_a_service_is_started_lazily_once_and_answers(apps_user):
    u = await apps_user()
    w = await _worker(apps_user, u, ["echo-app"], connect_app=True)
    app = await u.controller.install(
        manifest={"name": "Echo", "type": "echo-app", "version": "0.1.0"},
        source="echo",
        overwrite=True,
    )
    app_id = app["id"]
    ids = [s["id"] for s in app["services"]]
    assert f"{u.ws}/*:echo" in ids and f"{u.ws}/*:default" in ids, ids
    assert await u.controller.list_running() == [], "the verification run was stopped"

    caller = await apps_user.client(u)
    svcs = await asyncio.gather(*(caller.get_service(f"echo@{app_id}") for _ in range(5)))
    assert [await s.echo(i) for i, s in enumerate(svcs)] == list(range(5))
    running = await u.controller.list_running()
    assert len(running) == 1, "concurrent first calls start one instance"
    assert {await s.whoami() for s in svcs} == {running[0]["client_id"]}
    assert running[0]["service_id"].endswith(f":echo@{app_id}")
    # A running instance is reused.
    svc = await caller.get_service(f"echo@{app_id}")
    assert await svc.echo("x") == "x"
    assert len(await u.controller.list_running()) == 1
    await u.controller.stop(running[0]["id"])
    err = await expect_error(caller.get_service(f"nothing@{app_id}"))
    assert "not found" in str(err).lower()
    assert len(w.configs) == 2, "the verification run and one lazy start"


@pytest.mark.timeout_s(60)
async def test_an_idle_app_is_stopped_after_stop_after_inactive_and_traffic_keeps_it(apps_user):
    u = await apps_user()
    w = await _worker(apps_user, u, ["echo-app"], connect_app=True)
    app = await u.controller.install(
        manifest={"name": "Idle", "type": "echo-app", "version": "0.1.0"}, source="x", overwrite=True
    )
    session = await u.controller.start(app["id"], stop_after_inactive=4)
    svc = await u.api.get_service(f"{session['id']}:echo")
    # Calls for 6 s keep it running past its 4 s limit.
    for _ in range(12):
        assert await svc.echo(1) == 1
        await asyncio.sleep(0.5)
    assert [s["id"] for s in await u.controller.list_running()] == [session["id"]]

    async def stopped():
        return session["id"] in w.stopped and await u.controller.list_running() == []

    await wait_until(stopped, timeout=20)


async def test_a_failing_worker_leaves_no_session_and_no_app_behind(apps_user):
    u = await apps_user()
    await _worker(apps_user, u, ["broken"], fail_start=True)
    err = await expect_error(
        u.controller.install(
            manifest={"name": "Broken", "type": "broken", "version": "0.1.0"},
            source="x",
            app_id="broken-app",
            wait_for_service=False,
        )
    )
    assert "Failed to install app 'broken-app'" in str(err) and "cannot start anything" in str(err)
    assert "broken-app" not in [a["id"] for a in await u.controller.list_apps()]
    assert await u.controller.list_running() == []
    err = await expect_error(u.controller.start("broken-app"))
    assert "not found" in str(err).lower()


async def test_no_worker_for_the_type_is_a_clear_error(apps_user):
    u = await apps_user()
    err = await expect_error(
        u.controller.install(manifest={"name": "X", "type": "no-such-type", "version": "0.1.0"}, source="x")
    )
    assert "No server app worker found for app type: no-such-type" in str(err)


async def test_a_worker_that_disconnects_takes_its_sessions_with_it(apps_user):
    u = await apps_user()
    w = await _worker(apps_user, u, ["simple-task"])
    app = await u.controller.install(
        manifest={"name": "T", "type": "simple-task", "version": "0.1.0"}, source="x", wait_for_service=False
    )
    session = await u.controller.start(app["id"], wait_for_service=False)
    await w.api.disconnect()

    async def gone():
        return await u.controller.list_running() == []

    await wait_until(gone)
    err = await expect_error(u.controller.get_logs(session["id"]))
    assert "Server app instance not found" in str(err)


async def test_progress_messages_of_the_worker_and_the_controller_reach_the_caller(apps_user):
    u = await apps_user()
    await _worker(apps_user, u, ["simple-task"])
    messages = []
    app = await u.controller.install(
        manifest={"name": "P", "type": "simple-task", "version": "0.1.0"},
        source="x",
        wait_for_service=False,
        progress_callback=lambda m: messages.append(m),
    )

    async def got(text):
        return any(text in m["message"] for m in messages)

    await wait_until(lambda: got("Starting session"))
    assert await got("Parsing app manifest")
    assert all(set(m) >= {"type", "message"} for m in messages)
    messages.clear()
    session = await u.controller.start(app["id"], wait_for_service=False, progress_callback=lambda m: messages.append(m))
    await wait_until(lambda: got(f"Starting session {session['id']}"))


async def test_strangers_cannot_stop_read_or_run_in_a_workspace_s_sessions(apps_user):
    owner = await apps_user("owner")
    await _worker(apps_user, owner, ["simple-task"])
    app = await owner.controller.install(
        manifest={"name": "Mine", "type": "simple-task", "version": "0.1.0"}, source="x", wait_for_service=False
    )
    session = await owner.controller.start(app["id"], wait_for_service=False)
    stranger = await apps_user("stranger")
    for call in (
        stranger.controller.stop(session["id"]),
        stranger.controller.get_logs(session["id"]),
        stranger.controller.execute(session["id"], "rm -rf /"),
        stranger.controller.get_session_info(session["id"]),
    ):
        err = await expect_error(call)
        assert "permission" in str(err).lower(), err
    err = await expect_error(stranger.controller.install(manifest={"name": "X", "type": "simple-task", "version": "1"}, source="x", workspace=owner.ws))
    assert "permission" in str(err).lower()
    assert [s["id"] for s in await owner.controller.list_running()] == [session["id"]]
    anon = await connect_to_server({"server_url": owner.url})
    try:
        ctl = await anon.get_service("public/server-apps")
        err = await expect_error(ctl.install(manifest={"name": "X", "type": "simple-task", "version": "1"}, source="x"))
        assert "anonymous" in str(err).lower() or "permission" in str(err).lower()
    finally:
        await anon.disconnect()


async def test_app_tokens_are_scoped_to_the_app_workspace_and_client(apps_user):
    u = await apps_user()
    w = await _worker(apps_user, u, ["simple-task"])
    app = await u.controller.install(
        manifest={"name": "T", "type": "simple-task", "version": "0.1.0"}, source="x", wait_for_service=False
    )
    await u.controller.start(app["id"], wait_for_service=False)
    config = w.configs[-1]
    parsed = await u.api.parse_token(config["token"])
    # Only the app's workspace (where the installing user is admin, as in its own
    # workspace the user always is).
    assert list(parsed["scope"]["workspaces"]) == [u.ws], parsed["scope"]
    assert parsed["scope"]["client_id"] == config["client_id"]
    assert "admin" not in parsed.get("roles", [])
    # The token cannot connect as another client id.
    err = await expect_error(
        connect_to_server({"server_url": u.url, "token": config["token"], "client_id": "someone-else", "workspace": u.ws})
    )
    assert err is not None
    # Nor join another workspace.
    other = await apps_user("other")
    err = await expect_error(
        connect_to_server({"server_url": u.url, "token": config["token"], "client_id": config["client_id"], "workspace": other.ws})
    )
    assert err is not None


async def test_workers_are_listed_and_a_disabled_worker_is_not_used(apps_user):
    u = await apps_user()
    w = await _worker(apps_user, u, ["simple-task"])
    listed = await u.controller.list_workers()
    mine = [x for x in listed if x["id"] == w.service.id]
    assert mine and mine[0]["supported_types"] == ["simple-task"] and mine[0]["disabled"] is False
    assert any(x["id"].startswith("public/") for x in listed) or True
    assert [x["id"] for x in await u.controller.list_workers("simple-task")] == [w.service.id]
    app = await u.controller.install(
        manifest={"name": "T", "type": "simple-task", "version": "0.1.0"}, source="x", wait_for_service=False
    )
    session = await u.controller.start(app["id"], wait_for_service=False)
    await u.controller.edit_worker(w.service.id, disabled=True)
    assert [x["disabled"] for x in await u.controller.list_workers("simple-task")] == [True]
    await wait_until(lambda: _none_running(u))
    assert session["id"] in w.stopped, "disabling a worker stops its sessions"
    err = await expect_error(u.controller.start(app["id"], wait_for_service=False, worker_id=w.service.id))
    assert "disabled" in str(err)
    err = await expect_error(u.controller.start(app["id"], wait_for_service=False))
    assert "No server app worker found" in str(err)
    await u.controller.edit_worker(w.service.id, disabled=False)
    assert (await u.controller.start(app["id"], wait_for_service=False))["worker_id"] == w.service.id


async def _none_running(u):
    return await u.controller.list_running() == []


async def test_validate_app_manifest_reports_errors_warnings_and_suggestions(apps_user):
    u = await apps_user()
    bad = await u.controller.validate_app_manifest({"type": "mcp-server"})
    assert bad["valid"] is False and any("name" in e for e in bad["errors"])
    good = await u.controller.validate_app_manifest(
        {"name": "A", "type": "window", "version": "1.0.0", "entry_point": "index.html", "description": "d", "tags": ["t"]}
    )
    assert good == {"valid": True, "errors": [], "warnings": [], "suggestions": []}


async def test_app_files_can_be_listed_read_edited_and_committed(apps_user):
    u = await apps_user()
    await _worker(apps_user, u, ["simple-task"])
    app = await u.controller.install(
        manifest={"name": "F", "type": "simple-task", "version": "0.1.0", "entry_point": "main.txt"},
        source="hello",
        files=[{"name": "config.json", "content": {"a": 1}, "format": "json"}],
        wait_for_service=False,
    )
    app_id = app["id"]
    names = sorted(f["name"] for f in await u.controller.list_files(app_id))
    assert names == ["config.json", "main.txt"], names
    assert await u.controller.read_file(app_id, "main.txt") == "hello"
    assert await u.controller.read_file(app_id, "config.json", format="json") == {"a": 1}
    await u.controller.edit_file(app_id, "main.txt", "hello again")
    await u.controller.edit_app(app_id, manifest={"description": "edited"})
    await u.controller.commit_app(app_id, wait_for_service=False)
    assert await u.controller.read_file(app_id, "main.txt") == "hello again"
    info = await u.controller.get_app_info(app_id)
    assert info["manifest"]["description"] == "edited"
    err = await expect_error(u.controller.read_file(app_id, "main.txt", format="xml"))
    assert "format" in str(err)


async def test_an_http_call_to_an_app_service_starts_the_app(apps_user):
    import httpx

    u = await apps_user()
    await _worker(apps_user, u, ["echo-app"], connect_app=True)
    app = await u.controller.install(
        manifest={"name": "Echo", "type": "echo-app", "version": "0.1.0"}, source="x", overwrite=True
    )
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.get(
            f"{u.url}/{u.ws}/services/echo@{app['id']}/echo",
            params={"x": "hello"},
            headers={"Authorization": f"Bearer {u.token}"},
        )
    assert r.status_code == 200, r.text
    assert r.json() == "hello"
    assert len(await u.controller.list_running()) == 1


@pytest.mark.timeout_s(60)
async def test_a_daemon_app_runs_from_installation_and_is_restarted_when_it_exits(apps_user):
    u = await apps_user()
    w = await _worker(apps_user, u, ["echo-app"], connect_app=True)
    app = await u.controller.install(
        manifest={"name": "Daemon", "type": "echo-app", "version": "0.1.0", "daemon": True},
        source="x",
        overwrite=True,
    )
    running = await wait_until(lambda: u.controller.list_running())
    assert len(running) == 1 and running[0]["daemon"] is True and running[0]["app_id"] == app["id"]
    first = running[0]["id"]
    # The app's own client goes away (its process crashed): a new instance replaces it.
    await w.sessions[first]["app"].disconnect()

    async def replaced():
        now = await u.controller.list_running()
        return len(now) == 1 and now[0]["id"] != first and now

    now = await wait_until(replaced, timeout=20)
    svc = await u.api.get_service(f"echo@{app['id']}")
    assert await svc.whoami() == now[0]["client_id"]
    err = await expect_error(u.controller.start(app["id"], stop_after_inactive=10))
    assert "Daemon apps cannot have stop_after_inactive" in str(err)


async def test_server_apps_flags_of_the_reference_are_accepted(server_url):
    # --enable-server-apps is the default; the suite's server is started without it and
    # still serves the controller.
    api = await connect_to_server({"server_url": server_url})
    try:
        ctl = await api.get_service("public/server-apps")
        assert ctl["id"].endswith(":server-apps")
        for name in ("install", "uninstall", "start", "stop", "list_apps", "list_running", "list_workers",
                     "edit_worker", "get_logs", "edit_file", "remove_file", "list_files", "commit_app",
                     "get_app_info", "get_session_info", "read_file", "validate_app_manifest", "edit_app",
                     "publish", "execute"):
            assert callable(ctl[name]), name
    finally:
        await api.disconnect()
