"""Workspace lifecycle and quotas with the real client (workspace-api.md §4.5, §5.2,
§5.3, §6.2; issue: identity and workspaces): workspace events, ``cleanup``, revocation of
live sessions, the ``HYPHA_MAX_*`` quotas and the unload grace period."""

import asyncio
import time

import pytest

from compat_helpers import EventLog, eventually, expect_error, unique_id
from conftest import LIMITED_ENV, TEST_JWT_SECRET
from test_security import _forge


def _user_token(user: str, ws: str, permission: str = "rw") -> str:
    """A token for a registered (non-anonymous, non-root) user, signed with the suite's
    server secret as an identity provider sharing it would."""
    now = int(time.time())
    return _forge(
        {
            "iss": "https://amun.ai/",
            "aud": "https://amun-ai.eu.auth0.com/api/v2/",
            "sub": user,
            "iat": now,
            "exp": now + 3600,
            "scope": f"ws:{ws}#{permission} wid:{ws}",
            "gty": "client-credentials",
            "https://amun.ai/roles": [],
            "https://amun.ai/email": f"{user}@example.org",
        },
        TEST_JWT_SECRET.encode(),
    )


def _fresh_id(prefix: str) -> str:
    return unique_id(prefix).lower().replace("_", "-")


async def test_workspace_changed_reaches_the_members(workspace_pair):
    owner, member = workspace_pair
    await member.subscribe(["workspace_changed"])
    seen = EventLog().attach(member, "workspace_changed")
    await owner.set_env("COLOR", "green")
    changed = await seen.wait_for("workspace_changed")
    assert changed["data"]["id"] == owner.config.workspace
    assert changed["data"]["config"]["environs"]["COLOR"] == "green"


async def test_workspace_loaded_and_deleted_reach_the_actor(connect, root_token):
    # workspace_loaded / workspace_deleted go to the acting user's own workspace.
    root = await connect(client_id=unique_id("root"), token=root_token)
    await root.subscribe(["workspace_loaded", "workspace_deleted"])
    log = EventLog().attach(root, "workspace_loaded", "workspace_deleted")
    ws_id = _fresh_id("ws-events")
    await root.create_workspace({"id": ws_id})
    await log.wait_for("workspace_loaded", lambda m: m["data"]["id"] == ws_id)
    # The creator's own workspace bookmarks the new one, until it is deleted.

    async def bookmarked():
        info = await root.get_workspace_info(root.config.workspace)
        return [b["id"] for b in info["config"].get("bookmarks", [])]

    assert ws_id in await bookmarked()
    await root.delete_workspace(ws_id)
    await log.wait_for("workspace_deleted", lambda m: m["data"]["id"] == ws_id)
    assert ws_id not in await bookmarked()


async def test_cleanup_keeps_responsive_clients(workspace_pair):
    owner, member = workspace_pair
    # Everyone answers the ping: nothing removed.
    assert await owner.cleanup() == {}
    exc = await expect_error(member.cleanup())
    assert "permission" in str(exc).lower(), str(exc)


async def test_cleanup_removes_an_empty_temporary_workspace(connect, root_token):
    root = await connect(client_id=unique_id("root"), token=root_token)
    ws_id = _fresh_id("ws-scratch")
    await root.create_workspace({"id": ws_id})
    result = await root.cleanup(ws_id)
    assert result == {"removed_workspace": ws_id, "removed_clients": []}
    assert ws_id not in [w["id"] for w in await root.list_workspaces()]


@pytest.mark.rhizo_only
async def test_revoking_a_token_disconnects_the_sessions_it_opened(connect):
    owner = await connect(client_id=unique_id("own"))
    token = await owner.generate_token({"permission": "read_write"})
    member = await connect(client_id=unique_id("m"), workspace=owner.config.workspace, token=token)
    assert await member.echo("before") == "before"
    await owner.revoke_token(token)

    async def member_is_cut_off():
        try:
            await asyncio.wait_for(member.echo("after"), 2)
        except Exception:  # noqa: BLE001 - any failure means the session is gone
            return
        raise AssertionError("the revoked session still works")

    await eventually(member_is_cut_off, timeout=10)
    # The owner's own session is untouched.
    assert await owner.echo("still") == "still"


async def test_service_quota(connect, limited_server_url):
    limit = int(LIMITED_ENV["HYPHA_MAX_SERVICES_PER_CLIENT"])
    c = await connect(server_url=limited_server_url, client_id=unique_id("svc"))
    for i in range(limit):
        await c.register_service({"id": f"s{i}", "f": lambda: 1})
    exc = await expect_error(c.register_service({"id": "one-too-many", "f": lambda: 1}))
    assert "Service quota exceeded" in str(exc), str(exc)
    # Replacing a held service is not a new one.
    await c.register_service({"id": "s0", "f": lambda: 2}, {"overwrite": True})


async def test_workspace_quota(connect, limited_server_url):
    limit = int(LIMITED_ENV["HYPHA_MAX_WORKSPACES_PER_USER"])
    user = _fresh_id("quota-user")
    c = await connect(
        server_url=limited_server_url,
        client_id=unique_id("c"),
        workspace=f"ws-user-{user}",
        token=_user_token(user, f"ws-user-{user}", "a"),
    )
    # The personal workspace counts as one the user owns.
    owned = [w for w in await c.list_workspaces() if user in w["owners"]]
    created = [f"{user}-{i}" for i in range(limit - len(owned))]
    for ws_id in created:
        await c.create_workspace({"id": ws_id})
    exc = await expect_error(c.create_workspace({"id": f"{user}-extra"}))
    assert "Workspace quota exceeded" in str(exc), str(exc)
    if created:
        await c.delete_workspace(created[0])
        await c.create_workspace({"id": f"{user}-extra"})


async def test_connection_limits(connect, limited_server_url):
    per_user = int(LIMITED_ENV["HYPHA_MAX_CONNECTIONS_PER_USER"])
    per_ws = int(LIMITED_ENV["HYPHA_MAX_CLIENTS_PER_WORKSPACE"])
    owner = _fresh_id("limit-owner")
    ws = f"ws-user-{owner}"
    token = _user_token(owner, ws, "a")
    for _ in range(per_user):
        await connect(server_url=limited_server_url, client_id=unique_id("o"), workspace=ws, token=token)
    exc = await expect_error(
        connect(server_url=limited_server_url, client_id=unique_id("o"), workspace=ws, token=token)
    )
    assert "Too many connections for user" in str(exc), str(exc)
    # Other users fill the workspace up to its limit; then it refuses newcomers.
    for _ in range(per_ws - per_user):
        guest = _fresh_id("guest")
        await connect(
            server_url=limited_server_url, client_id=unique_id("g"), workspace=ws, token=_user_token(guest, ws)
        )
    late = _fresh_id("late")
    exc = await expect_error(
        connect(server_url=limited_server_url, client_id=unique_id("g"), workspace=ws, token=_user_token(late, ws))
    )
    assert "Too many clients in workspace" in str(exc), str(exc)


@pytest.mark.timeout_s(45)
async def test_temporary_workspace_outlives_its_last_client_by_the_grace_period(
    connect, limited_server_url, root_token
):
    grace = float(LIMITED_ENV["HYPHA_WORKSPACE_UNLOAD_GRACE_PERIOD"])
    root = await connect(server_url=limited_server_url, client_id=unique_id("root"), token=root_token)
    guest = await connect(server_url=limited_server_url, client_id=unique_id("guest"))
    ws = guest.config.workspace
    await guest.disconnect()
    # Still there just after the last client left...
    info = await root.get_workspace_info(ws)
    assert info["id"] == ws
    # ...and gone once the grace period passed.
    await asyncio.sleep(grace + 0.5)

    async def unloaded():
        await expect_error(root.get_workspace_info(ws), timeout=5)

    await eventually(unloaded, timeout=10)


async def test_a_registered_users_bookmarks_survive_reconnecting(connect):
    user = _fresh_id("bookworm")
    ws = f"ws-user-{user}"
    first = await connect(client_id=unique_id("b"), workspace=ws, token=_user_token(user, ws, "a"))
    await first.bookmark({"bookmark_type": "workspace", "id": "public"})
    await first.disconnect()
    await asyncio.sleep(0.5)
    again = await connect(client_id=unique_id("b"), workspace=ws, token=_user_token(user, ws, "a"))
    info = await again.get_workspace_info()
    assert info["persistent"] is True
    assert [b["id"] for b in info["config"]["bookmarks"]] == ["public"]
