"""Handshake, identity, workspaces and tokens (protocol.md §1, §8; workspace-api.md §1, §5.4)."""

import asyncio
from urllib.parse import urlparse

import pytest

from compat_helpers import expect_error, unique_id


async def test_anonymous_connect_config(connect, server_url):
    cid = unique_id("anon")
    c = await connect(client_id=cid)
    cfg = c.config
    ws = cfg.workspace
    assert isinstance(ws, str) and ws.startswith("ws-user-"), ws
    assert cfg.client_id == cid
    assert isinstance(cfg.manager_id, str) and cfg.manager_id
    assert "/" not in cfg.manager_id  # announced without the "*/" prefix (§1.4)
    public = cfg.public_base_url
    assert isinstance(public, str) and public.startswith("http"), public
    assert urlparse(public).port == urlparse(server_url).port
    user = cfg.user
    assert isinstance(user, dict)
    assert user["id"].startswith("anonymouz-"), user
    assert user["is_anonymous"] is True
    assert "anonymous" in user["roles"]
    # an anonymous user lands in its own workspace ws-user-<user id> (§1.3 step 3)
    assert ws == f"ws-user-{user['id']}"
    # reconnection support announced in connection_info (§1.4)
    assert isinstance(cfg.reconnection_token, str) and cfg.reconnection_token


async def test_two_anonymous_clients_get_different_workspaces(connect):
    a, b = await asyncio.gather(connect(), connect())
    assert a.config.workspace != b.config.workspace
    assert a.config.user["id"] != b.config.user["id"]
    assert a.config.workspace.startswith("ws-user-")
    assert b.config.workspace.startswith("ws-user-")


async def test_anonymous_client_cannot_join_foreign_workspace(connect):
    a = await connect()
    # Reference: ConnectionAbortedError("Failed to establish connection: Permission denied
    # for workspace: <ws>")
    exc = await expect_error(connect(workspace=a.config.workspace))
    assert isinstance(exc, ConnectionAbortedError), repr(exc)
    assert "permission" in str(exc).lower(), str(exc)


async def test_join_workspace_with_token(connect):
    owner = await connect(client_id=unique_id("owner"))
    ws = owner.config.workspace
    token = await owner.generate_token({"permission": "read_write"})
    assert isinstance(token, str) and token.count(".") == 2  # a JWT

    member_id = unique_id("member")
    member = await connect(client_id=member_id, workspace=ws, token=token)
    assert member.config.workspace == ws
    assert member.config.client_id == member_id
    # the token holder is a child identity of the owner (workspace-api.md §5.4)
    assert member.config.user["id"] != owner.config.user["id"]

    await owner.register_service({"id": "owner-svc", "mul": lambda a, b: a * b})
    await member.register_service({"id": "member-svc", "add": lambda a, b: a + b})

    # protected services are reachable inside the workspace, by short id
    svc = await member.get_service("owner-svc")
    assert await svc.mul(6, 7) == 42
    svc = await owner.get_service("member-svc")
    assert await svc.add(2, 3) == 5
    svc = await owner.get_service(f"{member_id}:member-svc")
    assert await svc.add(20, 22) == 42


async def test_parse_token(connect):
    owner = await connect()
    ws = owner.config.workspace
    token = await owner.generate_token({"permission": "read_write"})
    user = await owner.parse_token(token)
    assert user["id"] and user["id"] != owner.config.user["id"]
    assert user["parent"] == owner.config.user["id"]
    workspaces = user["scope"]["workspaces"]
    assert workspaces.get(ws) == "rw", workspaces


async def test_read_only_token_cannot_register_services(connect):
    owner = await connect()
    ws = owner.config.workspace
    token = await owner.generate_token({"permission": "read"})
    # A read-only member may connect (the client only logs that its built-in service
    # could not be registered), but registering a service needs read_write.
    reader = await connect(workspace=ws, token=token)
    assert reader.config.workspace == ws
    exc = await expect_error(reader.register_service({"id": "nope", "f": lambda: 1}))
    assert "permission" in str(exc).lower(), str(exc)
    names = [s["id"] for s in await owner.list_services()]
    assert not any(n.endswith(":nope") for n in names), names


async def test_bad_token_refused(connect):
    # Reference: ConnectionAbortedError("Authentication error: Error decoding token headers.")
    exc = await expect_error(connect(token="not-a-jwt"))
    assert isinstance(exc, ConnectionAbortedError), repr(exc)


async def test_duplicate_active_client_id_refused(connect):
    first = await connect(client_id=unique_id("dup"))
    ws = first.config.workspace
    token = await first.generate_token({"permission": "read_write"})
    exc = await expect_error(
        connect(client_id=first.config.client_id, workspace=ws, token=token)
    )
    assert isinstance(exc, ConnectionAbortedError), repr(exc)
    # Reference wording: "Failed to establish connection: Client already exists and is
    # active: <ws>/<cid>"
    assert "Client already exists and is active" in str(exc), str(exc)
    assert f"{ws}/{first.config.client_id}" in str(exc), str(exc)


@pytest.mark.rhizo_only
async def test_duplicate_refusal_leaves_original_client_working(connect):
    """protocol.md §1.3 step 6: a refused duplicate must not disturb the live client.

    Reference flaw (observed with hypha 0.21.137): the refused handshake's cleanup
    deletes the *original* client's routing entry and services, after which the original
    client's calls fail with "Connection has already been closed (client: <ws>/<cid>)".
    """
    first = await connect(client_id=unique_id("dup"))
    ws = first.config.workspace
    await first.register_service(
        {"id": "still-here", "config": {"visibility": "public"}, "ping": lambda: "ok"}
    )
    token = await first.generate_token({"permission": "read_write"})
    await expect_error(connect(client_id=first.config.client_id, workspace=ws, token=token))
    await asyncio.sleep(0.5)
    assert await first.echo("alive") == "alive"
    other = await connect()
    svc = await other.get_service(f"{ws}/{first.config.client_id}:still-here")
    assert await svc.ping() == "ok"


@pytest.mark.rhizo_only
async def test_read_write_member_cannot_mint_admin_tokens(connect):
    # The reference treats a child identity as an owner of its parent's workspace and lets
    # a read_write member mint admin tokens (workspace-api.md §5.4). rhizo keeps the grant
    # the member's token carries (docs/compat.md).
    owner = await connect()
    ws = owner.config.workspace
    token = await owner.generate_token({"permission": "read_write"})
    member = await connect(workspace=ws, token=token)
    exc = await expect_error(member.generate_token({"permission": "admin"}))
    assert "Only admin can generate token" in str(exc), str(exc)
