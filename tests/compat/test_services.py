"""Service registration, discovery, visibility and selection (protocol.md §4; workspace-api.md §2.3, §5.1)."""

import pytest

from compat_helpers import expect_error, unique_id


async def _provider(connect):
    prov = await connect(client_id=unique_id("prov"))
    await prov.register_service(
        {"id": "pub", "config": {"visibility": "public"}, "add": lambda a, b: a + b}
    )
    await prov.register_service({"id": "prot", "secret": lambda: "s3cret"})  # protected default
    return prov


async def test_register_returns_full_id(connect):
    prov = await connect(client_id=unique_id("prov"))
    ws, cid = prov.config.workspace, prov.config.client_id
    info = await prov.register_service({"id": "hello", "greet": lambda n: f"hi {n}"})
    assert info["id"] == f"{ws}/{cid}:hello"
    svc = await prov.get_service("hello")
    assert svc["id"] == f"{ws}/{cid}:hello"
    assert await svc.greet("x") == "hi x"


async def test_public_service_cross_workspace(connect):
    prov = await _provider(connect)
    ws, cid = prov.config.workspace, prov.config.client_id
    cons = await connect()
    assert cons.config.workspace != ws
    svc = await cons.get_service(f"{ws}/{cid}:pub")
    assert svc["id"] == f"{ws}/{cid}:pub"
    assert svc["config"]["workspace"] == ws
    assert await svc.add(40, 2) == 42
    # workspace/service form (any client of that workspace)
    svc2 = await cons.get_service(f"{ws}/pub")
    assert await svc2.add(1, 2) == 3


async def test_protected_service_refused_cross_workspace(connect):
    prov = await _provider(connect)
    ws, cid = prov.config.workspace, prov.config.client_id
    cons = await connect()
    # Reference: "PermissionError: Permission denied for non-public service in workspace <ws>"
    exc = await expect_error(cons.get_service(f"{ws}/{cid}:prot"))
    assert "permission" in str(exc).lower(), str(exc)
    exc = await expect_error(cons.get_service_info(f"{ws}/{cid}:prot"))
    assert "permission" in str(exc).lower(), str(exc)


async def test_protected_service_same_workspace_short_id(connect, workspace_pair):
    owner, member = workspace_pair
    await owner.register_service({"id": "prot", "secret": lambda: "s3cret"})
    svc = await member.get_service("prot")
    assert await svc.secret() == "s3cret"
    svc = await member.get_service(f"{owner.config.client_id}:prot")
    assert await svc.secret() == "s3cret"


async def test_get_unknown_service_fails(client):
    # Reference: "KeyError: 'Service not found: <ws>/*:does-not-exist@*'"
    exc = await expect_error(client.get_service("does-not-exist"))
    assert "Service not found" in str(exc), str(exc)


async def test_list_services_own_workspace(connect):
    prov = await _provider(connect)
    ws, cid = prov.config.workspace, prov.config.client_id
    services = await prov.list_services()
    ids = {s["id"] for s in services}
    assert f"{ws}/{cid}:pub" in ids
    assert f"{ws}/{cid}:prot" in ids
    by_id = {s["id"]: s for s in services}
    assert by_id[f"{ws}/{cid}:pub"]["config"]["visibility"] == "public"
    assert by_id[f"{ws}/{cid}:prot"]["config"]["visibility"] == "protected"
    assert by_id[f"{ws}/{cid}:pub"]["name"] == "pub"


async def test_list_services_other_workspace_shows_only_public(connect):
    prov = await _provider(connect)
    ws, cid = prov.config.workspace, prov.config.client_id
    cons = await connect()
    for query in (ws, {"workspace": ws}):
        ids = {s["id"] for s in await cons.list_services(query)}
        assert f"{ws}/{cid}:pub" in ids, (query, ids)
        assert f"{ws}/{cid}:prot" not in ids, (query, ids)
        assert all(i.startswith(f"{ws}/") for i in ids), (query, ids)


async def test_list_services_dict_query_by_type(connect):
    prov = await connect(client_id=unique_id("prov"))
    ws, cid = prov.config.workspace, prov.config.client_id
    await prov.register_service({"id": "typed", "type": "compat-type", "f": lambda: 1})
    await prov.register_service({"id": "plain", "f": lambda: 2})
    ids = {s["id"] for s in await prov.list_services({"workspace": ws, "type": "compat-type"})}
    assert ids == {f"{ws}/{cid}:typed"}, ids
    generic = {s["id"] for s in await prov.list_services({"workspace": ws, "type": "generic"})}
    assert f"{ws}/{cid}:plain" in generic and f"{ws}/{cid}:typed" not in generic, generic


async def test_get_service_info(connect):
    prov = await _provider(connect)
    ws, cid = prov.config.workspace, prov.config.client_id
    info = await prov.get_service_info("prot")
    assert info["id"] == f"{ws}/{cid}:prot"
    assert info["config"]["visibility"] == "protected"
    assert info["config"]["workspace"] == ws
    cons = await connect()
    info = await cons.get_service_info(f"{ws}/{cid}:pub")
    assert info["id"] == f"{ws}/{cid}:pub"
    assert info["config"]["visibility"] == "public"
    assert "add" in info["service_schema"]


async def test_unregister_service(connect):
    prov = await _provider(connect)
    ws, cid = prov.config.workspace, prov.config.client_id
    cons = await connect()
    assert await (await cons.get_service(f"{ws}/{cid}:pub")).add(1, 1) == 2

    await prov.unregister_service("pub")
    ids = {s["id"] for s in await prov.list_services()}
    assert f"{ws}/{cid}:pub" not in ids
    assert f"{ws}/{cid}:prot" in ids  # the other one is untouched
    exc = await expect_error(prov.get_service("pub"))
    assert "not found" in str(exc).lower(), str(exc)
    exc = await expect_error(cons.get_service(f"{ws}/{cid}:pub"))
    assert "not found" in str(exc).lower(), str(exc)


async def test_register_again_replaces(connect):
    prov = await connect(client_id=unique_id("prov"))
    await prov.register_service({"id": "ver", "v": lambda: 1}, overwrite=True)
    await prov.register_service({"id": "ver", "v": lambda: 2}, overwrite=True)
    ids = [s["id"] for s in await prov.list_services() if s["id"].endswith(":ver")]
    assert len(ids) == 1, ids
    assert await (await prov.get_service("ver")).v() == 2


async def test_get_manager_service_with_tilde(client):
    # Reference: get_service("~") returns the workspace manager itself (id "default",
    # name "Default workspace management service"); get_service_info("~") returns a
    # synthetic record with id "~".
    await client.register_service({"id": "mine", "f": lambda: 1})
    mgr = await client.get_service("~")
    assert str(mgr["id"]).endswith("default"), mgr["id"]
    assert await mgr.echo("via-tilde") == "via-tilde"
    ids = {s["id"] for s in await mgr.list_services()}  # acts with the caller's context
    assert f"{client.config.workspace}/{client.config.client_id}:mine" in ids
    info = await client.get_service_info("~")
    assert info["id"] == "~"


async def test_get_service_modes(workspace_pair, connect):
    owner, member = workspace_pair
    ws = owner.config.workspace
    token = await owner.generate_token({"permission": "read_write"})
    member2 = await connect(client_id=unique_id("member2"), workspace=ws, token=token)
    names = {member.config.client_id, member2.config.client_id}
    await member.register_service({"id": "calc", "who": lambda: member.config.client_id})
    await member2.register_service({"id": "calc", "who": lambda: member2.config.client_id})

    # exact (the default) with two matches is an error.
    # Reference: "AssertionError: Multiple services found for <ws>/*:calc, e.g. [...]"
    exc = await expect_error(owner.get_service("calc"))
    assert "Multiple services found" in str(exc), str(exc)
    exc = await expect_error(owner.get_service("calc", {"mode": "exact"}))
    assert "Multiple services found" in str(exc), str(exc)

    first = await (await owner.get_service("calc", {"mode": "first"})).who()
    last = await (await owner.get_service("calc", {"mode": "last"})).who()
    assert {first, last} == names
    # deterministic
    assert await (await owner.get_service("calc", mode="first")).who() == first
    assert await (await owner.get_service("calc", mode="last")).who() == last

    seen = set()
    for _ in range(30):
        svc = await owner.get_service("calc", {"mode": "random"})
        seen.add(await svc.who())
        if seen == names:
            break
    assert seen == names, seen


async def test_service_with_nested_members(connect):
    prov = await connect(client_id=unique_id("prov"))
    ws, cid = prov.config.workspace, prov.config.client_id
    await prov.register_service(
        {
            "id": "nested",
            "config": {"visibility": "public"},
            "math": {"add": lambda a, b: a + b, "deep": {"neg": lambda x: -x}},
            "version": "1.2.3",
        }
    )
    cons = await connect()
    svc = await cons.get_service(f"{ws}/{cid}:nested")
    assert await svc.math.add(2, 3) == 5
    assert await svc.math.deep.neg(4) == -4
    assert svc["version"] == "1.2.3"


@pytest.mark.rhizo_only
async def test_cannot_unregister_service_of_another_workspace(connect):
    """workspace-api.md §5.1 QUIRK / §12.5: the reference lets any client with rw on its
    own workspace unregister *any* resolvable service, including public services of other
    workspaces. rhizo must refuse and leave the service in place."""
    prov = await _provider(connect)
    ws, cid = prov.config.workspace, prov.config.client_id
    attacker = await connect()
    # go to the manager directly: the client-side wrapper only unregisters local services
    mgr = await attacker.rpc.get_manager_service({"timeout": 10, "case_conversion": "snake"})
    await expect_error(mgr.unregister_service(f"{ws}/{cid}:pub"))
    svc = await attacker.get_service(f"{ws}/{cid}:pub")
    assert await svc.add(1, 2) == 3


@pytest.mark.rhizo_only
async def test_unregister_own_service_when_name_is_shared(workspace_pair, connect):
    """protocol.md §4.7: unregister_service(<bare id>) must resolve to the caller's own
    service. The reference does a workspace-wide exact lookup and fails with "Multiple
    services found" when another client of the workspace uses the same service name."""
    owner, member = workspace_pair
    await owner.register_service({"id": "shared", "who": lambda: "owner"})
    await member.register_service({"id": "shared", "who": lambda: "member"})
    await member.unregister_service("shared")
    ws = owner.config.workspace
    ids = {s["id"] for s in await owner.list_services()}
    assert f"{ws}/{owner.config.client_id}:shared" in ids
    assert f"{ws}/{member.config.client_id}:shared" not in ids
    assert await (await owner.get_service("shared")).who() == "owner"


async def test_reference_wording_clients_match_on(connect):
    """The refusals worded as the reference words them (issue 16 item 7)."""
    a = await connect(client_id=unique_id("a"))
    b = await connect(client_id=unique_id("b"))
    exc = await expect_error(a.list_services({"workspace": b.config.workspace}, include_unlisted=True))
    assert f"Cannot include unlisted services from workspace {b.config.workspace}" in str(exc)
    exc = await expect_error(a.list_services({"workspace": "*"}, include_unlisted=True))
    assert "Cannot include unlisted services when searching all workspaces" in str(exc)
    exc = await expect_error(a.subscribe(f"{b.config.workspace}/some_event"))
    assert "forbidden" in str(exc)
    await a.register_service({"id": "solo", "config": {"singleton": True}, "f": lambda: 1})
    a2 = await connect(client_id=unique_id("a2"), workspace=a.config.workspace,
                       token=await a.generate_token())
    exc = await expect_error(a2.register_service({"id": "solo", "config": {"singleton": True}, "f": lambda: 2}))
    assert "A singleton service with the same name" in str(exc)
