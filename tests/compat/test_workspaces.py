"""Workspaces, tokens and the event log (workspace-api.md §5.3–5.5; issue: identity and
workspaces). Persistence across restarts is not covered yet."""

import pytest

from compat_helpers import expect_error, unique_id


async def test_root_creates_lists_and_deletes_a_workspace(connect, root_token):
    root = await connect(client_id=unique_id("root"), token=root_token)
    ws_id = unique_id("ws-test").lower().replace("_", "-")
    info = await root.create_workspace({"id": ws_id, "name": "Test WS", "description": "d", "persistent": True})
    assert info["id"] == ws_id and info["persistent"] is True
    ids = [w["id"] for w in await root.list_workspaces()]
    assert ws_id in ids
    exc = await expect_error(root.create_workspace({"id": ws_id}))
    assert "already exists" in str(exc)
    assert (await root.get_workspace_info(ws_id))["name"] == "Test WS"
    # A client can now join it with a token minted for it.
    token = await root.generate_token({"workspace": ws_id, "permission": "read_write"})
    member = await connect(client_id=unique_id("m"), workspace=ws_id, token=token)
    assert member.config.workspace == ws_id
    await member.set_env("GREETING", "hello")
    assert await member.get_env("GREETING") == "hello"
    assert (await member.get_env())["GREETING"] == "hello"
    await member.set_env("GREETING", None)
    await expect_error(member.get_env("GREETING"))
    t = await member.register_service_type({"id": "my-type", "name": "My type", "definition": {"f": "function"}})
    assert t["id"] == "my-type", "the id as given, as the reference returns it"
    assert (await member.get_service_type("my-type"))["name"] == "My type"
    assert [x["id"] for x in await member.list_service_types()] == ["my-type"]
    # A read_write member may not delete the workspace.
    exc = await expect_error(member.delete_workspace(ws_id))
    assert "Permission denied" in str(exc)
    await root.delete_workspace(ws_id)
    assert ws_id not in [w["id"] for w in await root.list_workspaces()]


async def test_anonymous_users_cannot_create_workspaces(connect):
    anon = await connect(client_id=unique_id("anon"))
    exc = await expect_error(anon.create_workspace({"id": "ws-anon-test"}))
    assert "Only registered user can create workspace" in str(exc)


async def test_revoked_tokens_are_refused_everywhere(connect):
    owner = await connect(client_id=unique_id("own"))
    ws = owner.config.workspace
    token = await owner.generate_token({"permission": "read_write"})
    first = await connect(client_id=unique_id("m1"), workspace=ws, token=token)
    assert first.config.workspace == ws
    await owner.revoke_token(token)
    exc = await expect_error(connect(client_id=unique_id("m2"), workspace=ws, token=token))
    assert "revoked" in str(exc).lower(), str(exc)
    exc = await expect_error(owner.parse_token(token))
    assert "revoked" in str(exc).lower(), str(exc)


async def test_read_tokens_cannot_use_admin_methods(connect):
    owner = await connect(client_id=unique_id("own"))
    ws = owner.config.workspace
    read = await owner.generate_token({"permission": "read"})
    reader = await connect(client_id=unique_id("r"), workspace=ws, token=read)
    other = await owner.generate_token({"permission": "read_write"})
    for call in (reader.generate_token({"permission": "admin"}), reader.revoke_token(other), reader.set_env("A", "b")):
        exc = await expect_error(call)
        assert "permission" in str(exc).lower(), str(exc)


async def test_event_log_status_summary_search_and_bookmarks(connect):
    c = await connect(client_id=unique_id("ev"))
    await c.register_service({"id": "finder", "description": "a very findable zebra service", "f": lambda: 1})
    await c.log_event("my_event", {"n": 1})
    await c.log_event("my_event", {"n": 2})
    await c.log_event("other_event")
    events = await c.get_events("my_event")
    assert [e["data"]["n"] for e in events] == [1, 2]
    stats = {s["event_type"]: s["count"] for s in await c.get_event_stats()}
    assert stats == {"my_event": 2, "other_event": 1}
    exc = await expect_error(c.log_event("has space"))
    assert "spaces" in str(exc)
    status = await c.check_status()
    assert status["status"] == "ready" and status["user_permission"] == "a"
    summary = await c.get_summary()
    assert summary["client_count"] >= 1
    assert any(s["id"].endswith(":finder") for s in summary["services"])
    hits = await c.search_services("findable zebra")
    assert any(h["id"].endswith(":finder") for h in hits)
    await c.bookmark({"bookmark_type": "service", "id": "finder"})
    marks = (await c.get_workspace_info())["config"]["bookmarks"]
    assert [m["id"] for m in marks] == ["finder"]
    await c.unbookmark({"id": "finder"})
    assert (await c.get_workspace_info())["config"]["bookmarks"] == []
