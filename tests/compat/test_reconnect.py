"""Automatic reconnection of hypha-rpc clients (protocol.md §1.7, §6.4).

The client's websocket is dropped from the client side, exactly as the installed
hypha-rpc 0.21.47 holds it: ``server.rpc._connection`` is the ``WebsocketRPCConnection``
and its ``_websocket`` attribute is the live ``websockets`` ClientConnection.
* "abort":  ``server.rpc._connection._websocket.transport.abort()`` -- TCP reset, no close
  frame (like a network failure; the client sees close code 1006);
* "close":  ``await server.rpc._connection._websocket.close()`` -- a clean close 1000
  that the user did not request (the client reconnects for it too).
"""

import asyncio

import pytest
from websockets.protocol import State

from compat_helpers import EventLog, eventually, expect_error, unique_id


async def _drop_socket(client, how: str):
    conn = client.rpc._connection
    old = conn._websocket
    assert old is not None and old.state == State.OPEN
    if how == "abort":
        old.transport.abort()
    else:
        await old.close()

    async def new_socket_open():
        assert conn._websocket is not old, "client has not reopened its websocket yet"
        assert conn._websocket.state == State.OPEN

    await eventually(new_socket_open, timeout=15, interval=0.05)
    return conn


@pytest.mark.parametrize("how", ["abort", "close"])
@pytest.mark.timeout_s(45)
async def test_reconnect_reregisters_services(connect, how):
    prov = await connect(client_id=unique_id("prov"))
    ws, cid = prov.config.workspace, prov.config.client_id

    def whoami(context=None):
        return context["from"]

    await prov.register_service(
        {
            "id": "pub",
            "config": {"visibility": "public", "require_context": ["whoami"]},
            "add": lambda a, b: a + b,
            "whoami": whoami,
        }
    )
    await prov.register_service({"id": "prot", "secret": lambda: "s3cret"})
    cons = await connect(client_id=unique_id("cons"))
    old_proxy = await cons.get_service(f"{ws}/{cid}:pub")
    assert await old_proxy.add(1, 2) == 3

    await _drop_socket(prov, how)

    async def callable_again():
        svc = await cons.get_service(f"{ws}/{cid}:pub")
        assert await svc.add(2, 3) == 5
        return svc

    svc = await eventually(callable_again, timeout=15, attempt_timeout=3)
    # same workspace and client id after the reconnection
    assert svc["id"] == f"{ws}/{cid}:pub"
    assert await svc.whoami() == f"{cons.config.workspace}/{cons.config.client_id}"
    # a proxy obtained before the drop keeps working (routing is by <ws>/<cid>)
    assert await old_proxy.add(3, 4) == 7

    # the reconnected client's own manager proxy works, and all its services are back
    assert await prov.echo("back") == "back"
    ids = {s["id"] for s in await prov.list_services()}
    assert {f"{ws}/{cid}:pub", f"{ws}/{cid}:prot"} <= ids, ids
    # ...and it can still call others
    other = await connect()
    await other.register_service({"id": "o", "config": {"visibility": "public"}, "f": lambda: "o"})
    o = await prov.get_service(f"{other.config.workspace}/{other.config.client_id}:o")
    assert await o.f() == "o"


@pytest.mark.timeout_s(45)
async def test_reconnected_member_stays_in_shared_workspace(workspace_pair):
    owner, member = workspace_pair
    ws = owner.config.workspace
    await member.register_service({"id": "calc", "add": lambda a, b: a + b})
    assert await (await owner.get_service("calc")).add(1, 1) == 2

    await _drop_socket(member, "abort")

    async def callable_again():
        svc = await owner.get_service(f"{member.config.client_id}:calc")
        assert await svc.add(2, 2) == 4

    await eventually(callable_again, timeout=15, attempt_timeout=3)
    ids = {c["id"] for c in await owner.list_clients()}
    assert f"{ws}/{member.config.client_id}" in ids
    # the member (a token user, not the owner) is back in the owner's workspace
    assert await member.ping(owner.config.client_id) == "pong"
    assert await (await member.get_service(f"{member.config.client_id}:calc")).add(3, 3) == 6


@pytest.mark.timeout_s(45)
async def test_disconnect_notifications_after_reconnect(workspace_pair):
    """After reconnecting, the client re-subscribes to client_disconnected; the server
    must deliver it on the new connection so pending calls are still cut short."""
    owner, member = workspace_pair

    async def hang():
        await asyncio.sleep(60)

    await member.register_service({"id": "hang", "hang": hang, "ok": lambda: "ok"})

    await _drop_socket(owner, "abort")

    async def usable_again():
        svc = await owner.get_service(f"{member.config.client_id}:hang")
        assert await svc.ok() == "ok"
        return svc

    svc = await eventually(usable_again, timeout=15, attempt_timeout=3)
    events = EventLog().attach(owner, "client_disconnected")
    pending = asyncio.ensure_future(svc.hang())
    await asyncio.sleep(0.5)
    await member.disconnect()
    await events.wait_for(
        "client_disconnected", lambda m: m["data"]["id"] == member.config.client_id
    )
    exc = await expect_error(pending, timeout=8)
    assert not isinstance(exc, TimeoutError), repr(exc)
