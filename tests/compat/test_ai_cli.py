"""The ai-cli worker (apps-workers.md §6; seed 003) with the real Claude Code and OpenCode
CLIs against a stand-in of their model APIs: py-worker's REST and WebSocket API as the seed
shows it, and the Hypha path (install, start, the per-session agent service, execute,
get_logs, lazy start), with crashes, hangs, malformed transcript lines, interrupts, two
sessions at once and the permission and secret checks."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time

import pytest
from websockets.sync.client import connect as ws_connect

from ai_cli_helpers import CLAUDE_KEY, OPENCODE_KEY, AiCliWorker, clis_installed, kill_cli_in
from apps_helpers import wait_until
from compat_helpers import expect_error, unique_id
from conftest import _binary_path

pytestmark = pytest.mark.timeout_s(120)


@pytest.fixture(scope="module")
def ai_worker(is_external, server_url):
    from conftest import ROOT_TOKEN

    if is_external:
        pytest.skip("registers in public with the root token of the rhizo under test")
    if not clis_installed():
        if os.environ.get("CI"):
            pytest.fail("the AI CLIs are not installed (tests/run.sh installs them)")
        pytest.skip("the AI CLIs are not installed (tests/run.sh installs them into $RHIZO_AI_CLIS)")
    w = AiCliWorker(_binary_path(), server_url=server_url, token=ROOT_TOKEN)
    yield w
    w.close()


def _recv_until(ws, pred, timeout=60):
    """Messages until one satisfies ``pred``; returns (all, the one)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        seen.append(msg)
        if pred(msg):
            return seen, msg
    raise AssertionError(f"no such message within {timeout}s: {seen}")


def _assistant_text(content) -> str:
    if not isinstance(content, dict):
        return ""
    if content.get("type") == "assistant":
        c = content.get("message", {}).get("content")
        if isinstance(c, str):
            return c
        return "".join(b.get("text", "") for b in c or [] if b.get("type") == "text")
    if content.get("type") == "text":
        return content.get("part", {}).get("text", "")
    return ""


def _create(w, cli, name=None, project=None):
    name = name or unique_id(f"{cli}-worker")
    status, worker = w.request("POST", "/api/workers", {
        "name": name, "project_path": str(w.projects / (project or name)), "ai_cli_type": cli,
    })
    assert status == 201, worker
    return worker


@pytest.mark.parametrize("cli", ["claude", "opencode"])
def test_the_seed_rest_and_websocket_example_runs_a_conversation(ai_worker, cli):
    w = ai_worker
    w.standin.script([f"{cli} first reply", f"{cli} second reply"])
    # As the seed's example: create a worker, connect, send, read the answers.
    worker = _create(w, cli)
    wid = worker["id"]
    assert worker["status"] == "running" and worker["ai_cli_type"] == cli
    assert worker["created_at"].endswith("Z") and "T" in worker["created_at"]
    with ws_connect(f"ws://127.0.0.1:{w.port}/ws/{wid}") as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert hello == {"type": "connected", "worker_id": wid, "worker_name": worker["name"], "ai_cli_type": cli}
        ws.send(json.dumps({"type": "message", "content": "Hello, AI!"}))
        _, got = _recv_until(ws, lambda m: m["type"] == "output" and _assistant_text(m["content"]) == f"{cli} first reply")
        assert got["timestamp"].endswith("Z")
        ws.send(json.dumps({"type": "ping", "content": "x"}))
        _recv_until(ws, lambda m: m["type"] == "pong")
        ws.send(json.dumps({"type": "message", "content": "And again"}))
        _recv_until(ws, lambda m: m["type"] == "output" and _assistant_text(m["content"]) == f"{cli} second reply")
    # The second turn carried the first: history reached the model.
    hist = w.standin.history()
    assert ("user", "Hello, AI!") in hist and ("assistant", f"{cli} first reply") in hist and ("user", "And again") in hist, hist
    # A new connection gets the history first.
    with ws_connect(f"ws://127.0.0.1:{w.port}/ws/{wid}") as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "connected"
        history = json.loads(ws.recv(timeout=10))
        assert history["type"] == "history"
        assert any(m.get("type") == "user" and m.get("content") == "Hello, AI!" for m in history["messages"]), history
        ws.send("not json")
        assert json.loads(ws.recv(timeout=10)) == {"type": "error", "content": "Invalid JSON message"}
        ws.send(json.dumps({"type": "shout"}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "error", "content": "Unknown message type: shout"}
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "pong"}, "the socket stays open after errors"
    status, listed = w.request("GET", "/api/workers")
    assert status == 200 and wid in [x["id"] for x in listed["workers"]]
    deadline = time.monotonic() + 30
    while (detail := w.request("GET", f"/api/workers/{wid}")[1])["info"]["turns"] < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert detail["messages"] and detail["info"]["turns"] == 2, detail["info"]
    assert w.request("DELETE", f"/api/workers/{wid}") == (200, {"status": "deleted", "message": f"Worker {wid} deleted successfully"})
    assert w.request("GET", f"/api/workers/{wid}") == (404, {"detail": f"Worker not found: {wid}"})
    with ws_connect(f"ws://127.0.0.1:{w.port}/ws/{wid}") as ws:
        assert json.loads(ws.recv(timeout=10)) == {"type": "error", "content": f"Worker not found: {wid}"}


def test_rest_refuses_what_a_request_may_not_choose_and_never_shows_keys(ai_worker):
    w = ai_worker
    status, body = w.request("POST", "/api/workers", {"name": "x", "project_path": "/etc", "ai_cli_type": "claude"})
    assert status == 400 and "outside the allowed base" in body["detail"], body
    status, body = w.request("POST", "/api/workers", {"name": "x", "project_path": "../../escape"})
    assert status == 400 and "outside the allowed base" in body["detail"], body
    status, body = w.request("POST", "/api/workers", {"name": "x", "project_path": "p", "ai_cli_type": "bash"})
    assert (status, body) == (400, {"detail": "Unknown AI CLI type: bash"})
    status, body = w.request("POST", "/api/workers", {"project_path": "p"})
    assert status == 422 and isinstance(body["detail"], list)
    assert w.request("POST", "/api/workers", b"{nope")[0] == 422
    # The body's config cannot pick the binary or the API base (py-worker merged it in).
    w.standin.script(["still claude"])
    evil = {"binary": "/bin/sh", "api_base": "http://127.0.0.1:1", "api_key": "stolen"}
    status, worker = w.request("POST", "/api/workers", {"name": "evil", "project_path": "evil", "config": evil})
    assert status == 201
    with ws_connect(f"ws://127.0.0.1:{w.port}/ws/{worker['id']}") as ws:
        ws.recv(timeout=10)
        ws.send(json.dumps({"type": "message", "content": "who are you"}))
        _recv_until(ws, lambda m: m["type"] == "output" and _assistant_text(m["content"]) == "still claude")
    status, clis = w.request("GET", "/api/ai-clis")
    assert status == 200 and {c["type"] for c in clis["available_clis"]} == {"claude", "opencode"}
    assert clis["default"] == "claude"
    assert all(c["config_options"]["api_key_configured"] for c in clis["available_clis"])
    everything = json.dumps([clis, w.request("GET", "/api/workers"), w.request("GET", f"/api/workers/{worker['id']}")])
    for key in w.secrets:
        assert key not in everything
    assert w.request("DELETE", f"/api/workers/{worker['id']}")[0] == 200
    assert w.request("GET", "/docs")[0] == 200
    status, doc = w.request("GET", "/openapi.json")
    assert status == 200 and "/api/workers" in doc["paths"]


def test_a_crashed_cli_and_a_hanging_model_are_clear_errors(ai_worker):
    w = ai_worker
    # A CLI that never gets an answer: the turn times out (through the Hypha-free REST
    # path: a message, then nothing), and after the model answers again the session works.
    worker = _create(w, "claude")
    wid = worker["id"]
    with ws_connect(f"ws://127.0.0.1:{w.port}/ws/{wid}") as ws:
        ws.recv(timeout=10)
        w.standin.script(["before the crash"])
        ws.send(json.dumps({"type": "message", "content": "one"}))
        _recv_until(ws, lambda m: m["type"] == "output" and _assistant_text(m["content"]) == "before the crash")
        # Crash: the CLI process is killed from outside.
        assert kill_cli_in(w.projects / worker["name"]), "the CLI runs in the project directory"
        _, err = _recv_until(ws, lambda m: m["type"] == "error")
        assert "claude CLI" in str(err["content"]) and ("signal" in str(err["content"]) or "exited" in str(err["content"]))
    status, detail = w.request("GET", f"/api/workers/{wid}")
    assert detail["status"] == "error" and "claude CLI" in detail["error"]
    with ws_connect(f"ws://127.0.0.1:{w.port}/ws/{wid}") as ws:
        ws.recv(timeout=10)
        ws.recv(timeout=10)  # history
        ws.send(json.dumps({"type": "message", "content": "are you there"}))
        _, err = _recv_until(ws, lambda m: m["type"] == "error")
        assert "Failed to send message to worker: the session failed" in err["content"]
    assert w.request("DELETE", f"/api/workers/{wid}")[0] == 200


def test_two_sessions_at_once_keep_their_own_conversations(ai_worker):
    w = ai_worker
    a, b = _create(w, "claude"), _create(w, "opencode")
    with ws_connect(f"ws://127.0.0.1:{w.port}/ws/{a['id']}") as wa, ws_connect(f"ws://127.0.0.1:{w.port}/ws/{b['id']}") as wb:
        wa.recv(timeout=10)
        wb.recv(timeout=10)
        wa.send(json.dumps({"type": "message", "content": "alpha question"}))
        wb.send(json.dumps({"type": "message", "content": "beta question"}))
        _recv_until(wa, lambda m: m["type"] == "output" and _assistant_text(m["content"]) == "echo: alpha question")
        _recv_until(wb, lambda m: m["type"] == "output" and _assistant_text(m["content"]) == "echo: beta question")
    for x in (a, b):
        assert w.request("DELETE", f"/api/workers/{x['id']}")[0] == 200


# --- the Hypha path ---------------------------------------------------------------------


async def _install(u, cli, **manifest):
    app = await u.controller.install(
        manifest={"name": f"Agent {cli}", "type": "ai-cli", "version": "0.1.0", "cli": cli, **manifest},
        overwrite=True,
        timeout=60,
    )
    return app


async def test_an_ai_cli_app_is_driven_through_the_controller_and_its_agent_service(ai_worker, apps_user):
    w = ai_worker
    u = await apps_user("aicli")
    app = await _install(u, "claude")
    ids = [s["id"] for s in app["services"]]
    assert f"{u.ws}/*:agent" in ids and f"{u.ws}/*:default" in ids, ids
    w.standin.script(["the test passes now"])
    session = await u.controller.start(app["id"])
    sid = session["id"]
    result = await u.controller.execute(sid, "fix the failing test", {"timeout": 60})
    assert result["status"] == "ok", result
    stdout = [o for o in result["outputs"] if o.get("name") == "stdout"][0]["text"]
    assert stdout == "the test passes now"
    assert any(o["type"] == "agent_event" for o in result["outputs"])
    logs = await u.controller.get_logs(sid)
    kinds = {i["type"] for i in logs["items"]}
    assert {"input", "output", "info"} <= kinds, kinds
    page = await u.controller.get_logs(sid, offset=1, limit=2)
    assert page["offset"] == 1 and len(page["items"]) == 2 and page["total"] == logs["total"]
    # Any client of the workspace drives the agent through its service.
    other = await apps_user.client(u)
    agent = await other.get_service(f"{sid}:agent")
    got = []
    attached = asyncio.ensure_future(agent.attach(lambda ev: got.append(ev)))
    await wait_until(lambda: asyncio.sleep(0, bool(got)))
    assert got[0]["type"] == "history" and got[0]["messages"]
    seq = await agent.send("and one more")
    assert isinstance(seq, int)
    await wait_until(lambda: asyncio.sleep(0, any(_assistant_text(e.get("content")) == "echo: and one more" for e in got[1:])), timeout=60)
    hist = await agent.history(0, 3)
    assert len(hist["items"]) == 3
    assert await agent.interrupt() in (True, False)
    # repr: hypha-rpc's result maps shadow dict methods with their keys ("items").
    everything = repr([logs, hist, got, await u.controller.list_running(), await u.controller.get_session_info(sid)])
    for key in w.secrets:
        assert key not in everything
    await u.controller.stop(sid)
    await asyncio.wait_for(attached, 20)
    assert await u.controller.list_running() == []


async def test_an_agent_service_is_started_lazily_and_strangers_cannot_touch_it(ai_worker, apps_user):
    u = await apps_user("aicli")
    app = await _install(u, "opencode")
    agent = await u.api.get_service(f"agent@{app['id']}")
    out = await agent.execute("lazy hello", "turn", 60)
    assert out["status"] == "ok" and out["outputs"][0]["text"] == "echo: lazy hello", out
    running = await u.controller.list_running()
    assert len(running) == 1
    sid = running[0]["id"]
    # The worker's own execute_stream: the turn's events as a remote generator.
    mine = await u.api.get_service(running[0]["worker_id"])
    items = [i async for i in await mine.execute_stream(sid, "stream this", {"timeout": 60})]
    assert items[-1] == {"type": "complete", "status": "ok"}, items
    assert any(_assistant_text(i.get("data")) == "echo: stream this" for i in items if i["type"] == "output"), items
    stranger = await apps_user("stranger")
    err = await expect_error(stranger.controller.get_logs(sid))
    assert "ermission" in str(err)
    worker = await stranger.api.get_service(running[0]["worker_id"])
    err = await expect_error(worker.get_logs(sid))
    assert "ermission" in str(err) or "denied" in str(err).lower()
    err = await expect_error(stranger.api.get_service(f"{sid}:agent"))
    assert "ermission" in str(err) or "denied" in str(err).lower() or "not found" in str(err).lower()
    await u.controller.stop(sid)


async def test_a_turn_that_never_ends_times_out_and_the_session_stays_usable(ai_worker, apps_user):
    w = ai_worker
    u = await apps_user("aicli")
    app = await _install(u, "claude")
    session = await u.controller.start(app["id"])
    sid = session["id"]
    w.standin.hang = True
    try:
        result = await u.controller.execute(sid, "this never ends", {"timeout": 4})
    finally:
        w.standin.hang = False
    assert result["status"] == "error" and result["error"]["ename"] == "TimeoutError", result
    w.standin.script(["back again"])
    result = await u.controller.execute(sid, "are you back", {"timeout": 60})
    assert result["status"] == "ok" and result["outputs"][0]["text"] == "back again", result
    await u.controller.stop(sid)


async def test_malformed_transcript_lines_are_skipped_and_counted(ai_worker, apps_user):
    u = await apps_user("aicli")
    app = await _install(u, "claude")
    session = await u.controller.start(app["id"])
    sid = session["id"]
    first = await u.controller.execute(sid, "first", {"timeout": 60})
    assert first["status"] == "ok"
    worker = await u.api.get_service(session["worker_id"])
    info = await worker.get_session_info(sid)
    slug = re.sub(r"[^A-Za-z0-9]", "-", info["working_dir"])
    transcripts = list((ai_worker.home / ".claude" / "projects" / slug).glob("*.jsonl"))
    assert len(transcripts) == 1, list((ai_worker.home / ".claude" / "projects").rglob("*.jsonl"))
    with open(transcripts[0], "a") as f:
        f.write("this is not json\n{\"half\": \n")
    second = await u.controller.execute(sid, "second", {"timeout": 60})
    assert second["status"] == "ok" and second["outputs"][0]["text"] == "echo: second", second
    info = await worker.get_session_info(sid)
    assert info["malformed_lines"] >= 1, info
    await u.controller.stop(sid)


@pytest.mark.parametrize("cli", ["claude", "opencode"])
async def test_interrupt_ends_a_running_turn_and_the_next_turn_works(ai_worker, apps_user, cli):
    w = ai_worker
    u = await apps_user("aicli")
    app = await _install(u, cli)
    session = await u.controller.start(app["id"])
    sid = session["id"]
    agent = await u.api.get_service(f"{sid}:agent")
    assert await agent.interrupt() is False, "no turn runs"
    w.standin.hang = True
    try:
        before = len(w.standin.hung_requests)
        pending = asyncio.ensure_future(agent.execute("a very long task", "turn", 60))
        await wait_until(lambda: asyncio.sleep(0, len(w.standin.hung_requests) > before), timeout=30)
        assert await agent.interrupt() is True
        result = await asyncio.wait_for(pending, 30)
    finally:
        w.standin.hang = False
    assert result["status"] == "error" and result["error"]["evalue"] == "interrupted", result
    w.standin.script([f"{cli} after the interrupt"])
    out = await agent.execute("next please", "turn", 60)
    assert out["status"] == "ok" and out["outputs"][0]["text"] == f"{cli} after the interrupt", out
    # (Claude Code joins the interrupted message, its marker and the next one into one turn.)
    assert any(role == "user" and text.endswith("next please") for role, text in w.standin.history())
    await u.controller.stop(sid)


def test_the_session_cap_is_py_worker_s_max_workers(ai_worker):
    from conftest import _binary_path as binary

    w = AiCliWorker(binary(), max_workers=1)
    try:
        first = _create(w, "claude")
        status, body = w.request("POST", "/api/workers", {"name": "second", "project_path": "second"})
        assert (status, body) == (400, {"detail": "Maximum number of workers (1) reached"})
        assert w.request("GET", "/api/health")[1]["max_workers"] == 1
        assert w.request("DELETE", f"/api/workers/{first['id']}")[0] == 200
        assert _create(w, "opencode")["ai_cli_type"] == "opencode", "room again after a delete"
    finally:
        w.close()


async def test_apps_of_an_unauthorised_workspace_cannot_name_a_project_path(ai_worker, apps_user):
    u = await apps_user("aicli")
    err = await expect_error(_install(u, "claude", project_path=str(ai_worker.projects / "shared")))
    assert "project_path is not allowed for apps of workspace" in str(err), err
    assert not (ai_worker.projects / "shared").exists()
