"""Many clients at once."""

import asyncio

import pytest

from compat_helpers import unique_id

N_CLIENTS = 50


@pytest.mark.timeout_s(90)
async def test_fifty_clients_connect_register_and_get_called(connect):
    async def one(i):
        c = await connect(client_id=unique_id(f"c{i}"))
        vis = "public" if i % 5 else "protected"  # every 5th one is protected
        info = await c.register_service(
            {"id": "scale", "config": {"visibility": vis}, "ident": lambda: i}
        )
        return c, info["id"], vis

    created = await asyncio.gather(*(one(i) for i in range(N_CLIENTS)))
    assert len({c.config.workspace for c, _, _ in created}) == N_CLIENTS
    assert len({sid for _, sid, _ in created}) == N_CLIENTS

    caller = await connect(client_id=unique_id("caller"))

    async def call(i, sid, vis):
        if vis != "public":
            try:
                await caller.get_service(sid)
            except Exception:  # noqa: BLE001
                return "refused"
            return "leaked"
        svc = await caller.get_service(sid)
        return await svc.ident()

    results = await asyncio.gather(
        *(call(i, sid, vis) for i, (_, sid, vis) in enumerate(created))
    )
    expected = [i if i % 5 else "refused" for i in range(N_CLIENTS)]
    assert results == expected


@pytest.mark.timeout_s(60)
async def test_many_members_in_one_workspace(connect):
    owner = await connect(client_id=unique_id("owner"))
    ws = owner.config.workspace
    token = await owner.generate_token({"permission": "read_write"})
    members = await asyncio.gather(
        *(connect(client_id=unique_id(f"m{i}"), workspace=ws, token=token) for i in range(20))
    )
    await asyncio.gather(
        *(m.register_service({"id": "worker", "ident": lambda i=i: i}) for i, m in enumerate(members))
    )
    ids = {s["id"] for s in await owner.list_services({"workspace": ws, "service_id": "worker"})}
    assert ids == {f"{ws}/{m.config.client_id}:worker" for m in members}
    clients = {c["id"] for c in await owner.list_clients()}
    assert {f"{ws}/{m.config.client_id}" for m in members} <= clients
    async def call(m):
        svc = await owner.get_service(f"{m.config.client_id}:worker")
        return await svc.ident()

    got = await asyncio.gather(*(call(m) for m in members))
    assert sorted(got) == list(range(20))
