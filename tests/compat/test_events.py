"""Server events, subscriptions and client-emitted broadcasts (protocol.md §6.3, §2.4;
workspace-api.md §5.5, §6)."""

import asyncio
import time

import pytest

from compat_helpers import EventLog, expect_error, unique_id

SYSTEM_EVENTS = ["service_added", "service_removed", "client_connected", "client_disconnected"]


async def test_subscribe_returns_true(client):
    # Reference returns True for a list of system events (and for a single string).
    assert await client.subscribe(["service_added", "service_removed", "client_connected"]) is True
    assert await client.subscribe("client_updated") is True
    assert await client.unsubscribe("client_updated") is True


async def test_member_lifecycle_events(connect):
    owner = await connect(client_id=unique_id("owner"))
    ws = owner.config.workspace
    assert await owner.subscribe(SYSTEM_EVENTS) is True
    events = EventLog().attach(owner, *SYSTEM_EVENTS)

    token = await owner.generate_token({"permission": "read_write"})
    mid = unique_id("member")
    member = await connect(client_id=mid, workspace=ws, token=token)

    ev = await events.wait_for("client_connected", lambda m: m["data"]["id"] == f"{ws}/{mid}")
    assert ev["data"]["workspace"] == ws

    await member.register_service({"id": "calc", "add": lambda a, b: a + b})
    ev = await events.wait_for(
        "service_added", lambda m: m["data"]["id"] == f"{ws}/{mid}:calc"
    )
    assert ev["data"]["config"]["workspace"] == ws
    assert ev["data"]["name"] == "calc"
    calc = await owner.get_service("calc")
    assert await calc.add(2, 3) == 5

    await member.unregister_service("calc")
    await events.wait_for("service_removed", lambda m: m["data"]["id"] == f"{ws}/{mid}:calc")

    await member.disconnect()
    # data.id is the *bare* client id plus data.workspace (protocol.md §6.3)
    ev = await events.wait_for("client_disconnected", lambda m: m["data"]["id"] == mid)
    assert ev["data"]["workspace"] == ws


async def test_events_do_not_leak_to_other_workspaces(connect):
    a = await connect()
    outsider = await connect()
    await outsider.subscribe(SYSTEM_EVENTS)
    events = EventLog().attach(outsider, *SYSTEM_EVENTS)
    await a.register_service({"id": "noise", "config": {"visibility": "public"}, "f": lambda: 1})
    await a.unregister_service("noise")
    await asyncio.sleep(0.7)
    foreign = [
        (n, m["data"]) for n, m in events.items
        if a.config.workspace in str(m.get("data"))
    ]
    assert foreign == []


async def test_call_pending_on_departed_client_fails_fast(workspace_pair):
    owner, member = workspace_pair

    async def hang():
        await asyncio.sleep(60)
        return "never"

    await member.register_service({"id": "hang", "hang": hang, "ok": lambda: "ok"})
    svc = await owner.get_service("hang")
    assert await svc.ok() == "ok"
    pending = asyncio.ensure_future(svc.hang())
    await asyncio.sleep(0.5)
    assert not pending.done()

    t0 = time.monotonic()
    await member.disconnect()
    # client_disconnected makes the owner's client reject the pending call at once
    # (reference: ConnectionError "Client disconnected: <ws>/<cid>"), long before the
    # 30 s method timeout
    exc = await expect_error(pending, timeout=8)
    assert time.monotonic() - t0 < 8
    assert not isinstance(exc, TimeoutError), repr(exc)


async def test_new_call_to_departed_client_fails_fast(workspace_pair, connect):
    owner, member = workspace_pair
    ws = owner.config.workspace
    await member.register_service(
        {"id": "gone", "config": {"visibility": "public"}, "ok": lambda: "ok"}
    )
    same_ws = await owner.get_service("gone")
    other = await connect()
    other_ws = await other.get_service(f"{ws}/{member.config.client_id}:gone")
    assert await same_ws.ok() == "ok" and await other_ws.ok() == "ok"

    events = EventLog().attach(owner, "client_disconnected")
    await member.disconnect()
    await events.wait_for("client_disconnected", lambda m: m["data"]["id"] == member.config.client_id)

    for proxy in (same_ws, other_ws):
        t0 = time.monotonic()
        # Reference: RemoteException "Target peer <ws>/<cid> is not connected" (synthetic
        # reject from the server, protocol.md §2.6)
        exc = await expect_error(proxy.ok(), timeout=8)
        assert time.monotonic() - t0 < 8
        assert not isinstance(exc, TimeoutError), repr(exc)
    exc = await expect_error(owner.get_service("gone"))
    assert "not found" in str(exc).lower(), str(exc)


async def test_emit_custom_event_to_workspace(workspace_pair, connect):
    owner, member = workspace_pair
    ws = owner.config.workspace
    token = await owner.generate_token({"permission": "read_write"})
    bystander = await connect(client_id=unique_id("bystander"), workspace=ws, token=token)

    assert await member.subscribe(["my-event"]) is True
    got = EventLog().attach(member, "my-event")
    not_subscribed = EventLog().attach(bystander, "my-event")

    await owner.emit({"type": "my-event", "to": "*", "data": {"hello": [1, 2, 3]}})
    msg = await got.wait_for("my-event")
    assert msg["data"] == {"hello": [1, 2, 3]}
    # server-stamped sender identity
    assert msg["from"] == f"{ws}/{owner.config.client_id}"
    assert msg["ws"] == ws

    await asyncio.sleep(0.5)
    assert not_subscribed.items == []  # delivery is filtered by subscription

    await member.unsubscribe("my-event")
    await owner.emit({"type": "my-event", "to": "*", "data": "second"})
    await asyncio.sleep(0.5)
    assert [m["data"] for m in got.matching("my-event")] == [{"hello": [1, 2, 3]}]


async def test_subscribe_to_other_workspace_event_refused(connect):
    a = await connect()
    b = await connect()
    # Reference: ValueError "... does not match your workspace ... Clients can only
    # subscribe to events within their own workspace or system events."
    await expect_error(b.subscribe([f"{a.config.workspace}/secret-event"]))


@pytest.mark.rhizo_only
async def test_cross_workspace_broadcast_not_delivered(connect):
    """workspace-api.md §6.1 QUIRK / §12.6, protocol.md §2.4: the reference routes a
    broadcast addressed to ``<other-ws>/*`` into the other workspace. rhizo must not
    deliver it (refusing or dropping it are both fine)."""
    sender = await connect()
    victim = await connect()
    await victim.subscribe(["my-event"])
    got = EventLog().attach(victim, "my-event")
    await sender.emit({"type": "my-event", "to": f"{victim.config.workspace}/*", "data": "x"})
    await asyncio.sleep(1.0)
    assert got.items == []
    assert await sender.echo("still connected") == "still connected"


@pytest.mark.rhizo_only
async def test_cross_workspace_pending_call_fails_fast(connect):
    # The reference only tells the departed client's own workspace, so a caller in
    # another workspace waits for its 30 s timeout. rhizo also sends client_disconnected
    # to the callers in other workspaces that had sent frames to the departed client.
    provider = await connect()

    async def hang():
        await asyncio.sleep(60)
        return "never"

    await provider.register_service(
        {"id": "hang-pub", "config": {"visibility": "public"}, "hang": hang, "ok": lambda: "ok"}
    )
    caller = await connect()
    assert caller.config.workspace != provider.config.workspace
    svc = await caller.get_service(f"{provider.config.workspace}/{provider.config.client_id}:hang-pub")
    assert await svc.ok() == "ok"
    pending = asyncio.ensure_future(svc.hang())
    await asyncio.sleep(0.5)
    assert not pending.done()
    t0 = time.monotonic()
    await provider.disconnect()
    exc = await expect_error(pending, timeout=8)
    assert time.monotonic() - t0 < 8
    assert "disconnected" in str(exc).lower(), repr(exc)
