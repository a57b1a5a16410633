"""The admin utilities ``ws-user-root/admin-utils`` (workspace-api.md §9.3) with the real
hypha-rpc client: root only, servers, workspaces, kicking a client, unloading a workspace,
metrics, and blocks of users and IP addresses enforced on connect and on HTTP, kept in the
database across a restart. Owners listed by e-mail may connect to a workspace."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import httpx
import pytest
from hypha_rpc import connect_to_server

from compat_helpers import unique_id
from conftest import TEST_JWT_SECRET, _start_rhizo, _stop_rhizo

pytestmark = pytest.mark.asyncio


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token_for(user_id: str, scope: str, email: str | None = None) -> str:
    """An HS256 JWT for ``user_id`` in the reference's claim layout, with ``scope`` as is."""
    now = int(time.time())
    claims = {
        "iss": "https://amun.ai/",
        "aud": "https://amun-ai.eu.auth0.com/api/v2/",
        "sub": user_id,
        "iat": now,
        "exp": now + 3600,
        "scope": scope,
        "gty": "client-credentials",
        "https://amun.ai/roles": [],
        "https://amun.ai/email": email or f"{user_id}@example.org",
    }
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims).encode())
    sig = hmac.new(TEST_JWT_SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{_b64(sig.digest())}"


async def _admin(connect, root_token):
    root = await connect(token=root_token, client_id=unique_id("root"))
    return root, await root.get_service("ws-user-root/admin-utils")


async def raw_client(url: str, client_id: str):
    """A bare WebSocket connection through the handshake (protocol.md §1.3); it does
    not reconnect, so its close code shows what the server did."""
    import websockets

    ws = await websockets.connect(url.replace("http", "ws", 1) + "/ws")
    await ws.send(json.dumps({"client_id": client_id, "workspace": None, "token": None}))
    info = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert info["type"] == "connection_info", info
    return ws, info


async def closed_with(ws, timeout: float = 10.0):
    """``(code, reason)`` of the close frame the server sent."""
    await asyncio.wait_for(ws.wait_closed(), timeout)
    return ws.close_code, ws.close_reason


async def _wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_only_root_gets_and_calls_the_admin_utilities(connect, root_token, server_url):
    _, admin = await _admin(connect, root_token)
    assert admin.id.startswith("ws-user-root/")
    assert admin.config["visibility"] == "protected"
    servers = await admin.list_servers()
    assert isinstance(servers, list) and len(servers) == 1
    # An ordinary user may not fetch it ...
    guest = await connect(client_id=unique_id("guest"))
    with pytest.raises(Exception, match="Permission denied"):
        await guest.get_service("ws-user-root/admin-utils")
    # ... nor call its functions with an object someone else fetched for it.
    user = await connect(token=token_for(unique_id("plain"), "ws:ws-user-plain#a"))
    with pytest.raises(Exception, match="Permission denied"):
        await user.get_service("ws-user-root/admin-utils")
    # Over HTTP too: an anonymous caller is refused, the root token is not.
    r = httpx.get(f"{server_url}/ws-user-root/services/admin-utils/list_servers", timeout=10)
    assert r.status_code == 403, r.text
    r = httpx.get(
        f"{server_url}/ws-user-root/services/admin-utils/list_servers",
        headers={"Authorization": f"Bearer {root_token}"},
        timeout=10,
    )
    assert r.status_code == 200 and r.json() == servers, r.text


async def test_workspaces_metrics_and_usage(connect, root_token):
    _, admin = await _admin(connect, root_token)
    member = await connect(client_id=unique_id("usage"))
    await member.register_service({"id": "usage-svc", "echo": lambda x: x})
    ids = [w["id"] for w in await admin.list_workspaces()]
    assert {"public", "ws-user-root", member.config.workspace} <= set(ids), ids
    metrics = await admin.get_metrics()
    assert metrics["rpc"]["connections"] >= 2
    assert metrics["rpc"]["frames_in"] > 0
    assert metrics["eventbus"]["clustered"] is False
    usage = await admin.get_resource_usage()
    assert usage["connections_per_workspace"][member.config.workspace] == 1
    key = f"{member.config.workspace}/{member.config.client_id}"
    assert usage["services_per_client"][key] == 1, usage["services_per_client"]
    assert usage["limits"]["max_connections_per_user"] > 0


async def test_kickout_client_and_unload_workspace(connect, root_token, server_url):
    _, admin = await _admin(connect, root_token)
    victim, info = await raw_client(server_url, unique_id("victim"))
    ws, cid = info["workspace"], info["client_id"]
    await admin.kickout_client(ws, cid, 4001, "bye")
    assert await closed_with(victim) == (4001, "bye")
    with pytest.raises(Exception, match="Client not connected"):
        await admin.kickout_client(ws, "no-such-client")
    other, info = await raw_client(server_url, unique_id("victim"))
    with pytest.raises(Exception, match="cannot be sent"):
        await admin.kickout_client(info["workspace"], info["client_id"], 1005)

    await admin.unload_workspace(info["workspace"], wait=True, timeout=5)
    code, reason = await closed_with(other)
    assert (code, reason) == (1001, f"Workspace unloaded: {info['workspace']}")
    with pytest.raises(Exception, match="not found"):
        await admin.unload_workspace("ws-no-such-workspace")


async def test_a_blocked_user_is_kicked_and_refused_everywhere(connect, root_token, server_url):
    _, admin = await _admin(connect, root_token)
    uid = unique_id("mallory")
    token = token_for(uid, f"ws:ws-user-{uid}#a")
    mallory = await connect(token=token, client_id=unique_id("m"))
    assert mallory.config.user["id"] == uid

    said = await admin.block_user(uid, duration=600, reason="spam")
    assert said == f"Blocked user {uid}, kicked 1 connections"
    blocked = await admin.list_blocked()
    row = next(u for u in blocked["users"] if u["id"] == uid)
    assert row["reason"] == "spam" and 590 <= row["ttl_seconds"] <= 600

    with pytest.raises(Exception, match="User is blocked: spam"):
        await asyncio.wait_for(
            connect_to_server({"server_url": server_url, "token": token}), 20
        )
    r = httpx.get(
        f"{server_url}/public/services/",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 403 and "User is blocked" in r.text, r.text

    assert await admin.unblock_user(uid) == f"Unblocked user {uid}"
    back = await connect(token=token, client_id=unique_id("m"))
    assert back.config.user["id"] == uid
    with pytest.raises(Exception, match="root user cannot be blocked"):
        await admin.block_user("root")


async def test_a_blocked_address_is_refused_on_http_and_websocket(connect, root_token, server_url):
    _, admin = await _admin(connect, root_token)
    ip = "10.77.0.9"
    assert await admin.block_ip(ip, duration=600, reason="flood") == f"Blocked IP {ip}"
    headers = {"X-Forwarded-For": f"{ip}, 127.0.0.1"}
    r = httpx.get(f"{server_url}/public/services/", headers=headers, timeout=10)
    assert r.status_code == 403 and r.json()["detail"] == "IP is blocked: flood", r.text
    with pytest.raises(Exception):
        await asyncio.wait_for(
            connect_to_server({"server_url": server_url, "additional_headers": headers}), 20
        )
    # Everyone else is unaffected.
    assert httpx.get(f"{server_url}/public/services/", timeout=10).status_code == 200
    assert any(b["id"] == ip for b in (await admin.list_blocked())["ips"])
    with pytest.raises(Exception, match="not an IP address"):
        await admin.block_ip("example.org")
    assert await admin.unblock_ip(ip) == f"Unblocked IP {ip}"
    assert httpx.get(f"{server_url}/public/services/", headers=headers, timeout=10).status_code == 200


async def test_blocks_survive_a_restart(request, tmp_path):
    server, stop, workdir = _start_rhizo(workdir=tmp_path)
    from conftest import ROOT_TOKEN

    uid = unique_id("kept")
    try:
        root = await connect_to_server({"server_url": server.url, "token": ROOT_TOKEN})
        admin = await root.get_service("ws-user-root/admin-utils")
        await admin.block_user(uid, 0, "kept")
        await root.disconnect()
    finally:
        stop()
    server, stop, workdir = _start_rhizo(workdir=tmp_path, port=None)
    try:
        root = await connect_to_server({"server_url": server.url, "token": ROOT_TOKEN})
        admin = await root.get_service("ws-user-root/admin-utils")
        row = next(u for u in (await admin.list_blocked())["users"] if u["id"] == uid)
        # Duration 0 blocks for 30 days, as in the reference.
        assert row["ttl_seconds"] > 29 * 24 * 3600
        with pytest.raises(Exception, match="User is blocked: kept"):
            await connect_to_server(
                {"server_url": server.url, "token": token_for(uid, f"ws:ws-user-{uid}#a")}
            )
        await root.disconnect()
    finally:
        _stop_rhizo(request, server, stop, workdir)


async def test_owners_listed_by_email_may_connect(connect):
    alice_id, bob_id = unique_id("alice"), unique_id("bob")
    alice = await connect(token=token_for(alice_id, f"ws:ws-user-{alice_id}#a"))
    ws = unique_id("shared-ws")
    await alice.create_workspace(
        {"id": ws, "name": ws, "owners": [f"{bob_id}@example.org"], "persistent": False}
    )
    # Bob's token grants nothing in that workspace: ownership by e-mail admits him.
    bob = await connect(token=token_for(bob_id, f"ws:ws-user-{bob_id}#a"), workspace=ws)
    assert bob.config.workspace == ws
    carol_id = unique_id("carol")
    with pytest.raises(Exception, match="Permission denied"):
        await connect(token=token_for(carol_id, f"ws:ws-user-{carol_id}#a"), workspace=ws)


async def test_blocks_and_kicks_reach_every_node_of_a_cluster(request, is_external):
    """Two nodes on one Redis (separate in-memory databases, so only the cluster channel
    carries the block): a user blocked on one node is kicked and refused on the other, an
    address blocked on one is refused by the other, and a client on the other node is
    kicked out from the first."""
    if is_external:
        pytest.skip("starts rhizo nodes of its own")
    import os

    from conftest import ROOT_TOKEN
    from test_cluster import _ensure_redis

    _ensure_redis()
    prefix = f"rhizo-compat-admin-{os.getpid()}-{time.monotonic_ns()}"
    nodes = []
    clients = []
    try:
        for sid in ["adm-a", "adm-b"]:
            env = {
                "HYPHA_SERVER_ID": sid,
                "HYPHA_REDIS_URI": "redis://127.0.0.1:6379/0",
                "RHIZO_REDIS_PREFIX": prefix,
            }
            nodes.append(_start_rhizo(extra_env=env, args=["--database-uri", "memory"]))
        url_a, url_b = nodes[0][0].url, nodes[1][0].url
        root = await connect_to_server({"server_url": url_a, "token": ROOT_TOKEN})
        clients.append(root)
        admin = await root.get_service("ws-user-root/admin-utils")

        async def both_listed():
            return sorted(await admin.list_servers()) == ["adm-a", "adm-b"]

        assert await _wait_for(both_listed), await admin.list_servers()

        uid = unique_id("roamer")
        token = token_for(uid, f"ws:ws-user-{uid}#a")
        far = await connect_to_server({"server_url": url_b, "token": token})
        clients.append(far)
        await admin.block_user(uid, 600, "cluster")

        async def refused_on_b():
            try:
                c = await connect_to_server({"server_url": url_b, "token": token})
            except Exception as e:  # noqa: BLE001 - the refusal is what we wait for
                return "User is blocked: cluster" in str(e)
            await c.disconnect()
            return False

        assert await _wait_for(refused_on_b), "node b still admits the blocked user"

        ip = "10.66.0.3"
        await admin.block_ip(ip, 600, "cluster")

        async def ip_refused_on_b():
            r = httpx.get(f"{url_b}/public/services/", headers={"X-Forwarded-For": ip}, timeout=5)
            return r.status_code == 403

        assert await _wait_for(ip_refused_on_b), "node b still serves the blocked address"

        far_raw, info = await raw_client(url_b, unique_id("far"))
        ws, cid = info["workspace"], info["client_id"]

        async def kicked_from_a():
            try:
                await admin.kickout_client(ws, cid, 4002, "far kick")
            except Exception as e:  # noqa: BLE001 - until node a's directory knows it
                assert "Client not connected" in str(e), e
                return False
            return True

        assert await _wait_for(kicked_from_a), "node a never found the client of node b"
        assert await closed_with(far_raw) == (4002, "far kick")
    finally:
        await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)
        for server, stop, workdir in nodes:
            _stop_rhizo(request, server, stop, workdir)
