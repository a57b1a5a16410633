"""Workspace-manager details (workspace-api.md §5.1, §8.1, §8.4): search_services
filters / paging / fields / order, measured selection modes, hidden
authorized_workspaces, case conversion, `~` over HTTP and the apps route's unknown
workspace answer."""

import asyncio

import httpx
import pytest

from compat_helpers import expect_error, unique_id


# --------------------------------------------------------------------------- search


async def _search(client, **kwargs):
    """``search_services(**kwargs)``; skips when the server has search disabled (the
    reference without ``--enable-service-search``)."""
    try:
        return await client.search_services(**kwargs)
    except Exception as exc:  # noqa: BLE001
        if "Service search is not enabled" in str(exc):
            pytest.skip("service search is not enabled on this server")
        raise


async def _catalogue(connect):
    """A client whose workspace holds three services of a type of their own (public,
    protected, unlisted) and one of another type."""
    c = await connect(client_id=unique_id("search"))
    kind = unique_id("stype")
    other = unique_id("otype")
    specs = [
        ("s-alpha", "Alpha service", kind, "public", "alpha zebra adder"),
        ("s-beta", "Beta service", kind, "protected", "beta zebra multiplier"),
        ("s-gamma", "Gamma service", kind, "unlisted", "gamma zebra divider"),
        ("s-other", "Other service", other, "public", "other zebra"),
    ]
    for sid, name, typ, vis, docs in specs:
        await c.register_service(
            {
                "id": sid,
                "name": name,
                "type": typ,
                "description": docs,
                "docs": docs,
                "config": {"visibility": vis},
                "f": lambda: 1,
            }
        )
    return c, kind


def _names(items):
    return [i["id"].rsplit(":", 1)[-1] for i in items]


async def test_search_filters_and_include_unlisted(connect):
    c, kind = await _catalogue(connect)
    hits = await _search(c, filters={"type": kind}, limit=10)
    assert sorted(_names(hits)) == ["s-alpha", "s-beta"]
    hits = await _search(c, filters={"type": kind}, limit=10, include_unlisted=True)
    assert sorted(_names(hits)) == ["s-alpha", "s-beta", "s-gamma"]
    hits = await _search(c, filters={"type": kind, "visibility": "public"}, limit=10)
    assert _names(hits) == ["s-alpha"]
    # Another workspace finds the public one only.
    stranger = await connect()
    hits = await _search(stranger, filters={"type": kind}, limit=10, include_unlisted=True)
    assert _names(hits) == ["s-alpha"]


@pytest.mark.rhizo_only  # dotted paths into the record are rhizo's extension
async def test_search_filters_on_config_paths(connect):
    c, kind = await _catalogue(connect)
    hits = await _search(
        c, filters={"type": kind, "config.visibility": "protected"}, limit=10
    )
    assert _names(hits) == ["s-beta"]


async def test_search_return_fields_order_and_pagination(connect):
    c, kind = await _catalogue(connect)
    hits = await _search(c, filters={"type": kind}, return_fields=["id", "name"], limit=10)
    assert len(hits) == 2
    for item in hits:
        assert set(k for k, v in item.items() if v is not None) == {"id", "name"}, item
    hits = await _search(c, filters={"type": kind}, order_by="name", include_unlisted=True)
    assert [h["name"] for h in hits] == ["Alpha service", "Beta service", "Gamma service"]
    page = await _search(
        c,
        filters={"type": kind},
        order_by="name",
        include_unlisted=True,
        limit=1,
        offset=1,
        pagination=True,
    )
    assert page["total"] == 3 and page["offset"] == 1 and page["limit"] == 1
    assert [h["name"] for h in page["items"]] == ["Beta service"]
    # Without pagination the items come alone, at most `limit` (default 5).
    hits = await _search(c, filters={"type": kind}, order_by="name", limit=1, offset=1)
    assert isinstance(hits, list) and [h["name"] for h in hits] == ["Beta service"]


@pytest.mark.rhizo_only  # the reference sorts ascending only
async def test_search_order_descending(connect):
    c, kind = await _catalogue(connect)
    for order in ("-name", "name desc"):
        hits = await _search(c, filters={"type": kind}, order_by=order, include_unlisted=True)
        assert [h["name"] for h in hits] == ["Gamma service", "Beta service", "Alpha service"]


@pytest.mark.rhizo_only  # word matching, not the reference's embedding similarity
async def test_search_text_ranks_by_matching_words(connect):
    c, kind = await _catalogue(connect)
    hits = await _search(c, query="gamma divider", include_unlisted=True, limit=10)
    assert _names(hits)[0] == "s-gamma"
    hits = await _search(c, query="zebra", filters={"type": kind}, limit=10)
    assert sorted(_names(hits)) == ["s-alpha", "s-beta"]
    assert await _search(c, query="nothing-like-this-anywhere", limit=10) == []


# --------------------------------------------------------------------------- selection


async def _balanced(connect, workspace_pair):
    """Two providers (client ids sorting a-… before b-…) of service `lb` in one workspace;
    `get_load` answers 5 and 1, `who` their client id."""
    owner, _ = workspace_pair
    token = await owner.generate_token({"permission": "read_write"})
    ws = owner.config.workspace
    a = await connect(client_id=unique_id("a-lb"), workspace=ws, token=token)
    b = await connect(client_id=unique_id("b-lb"), workspace=ws, token=token)
    gate = asyncio.Event()

    async def slow():
        await gate.wait()
        return "done"

    for prov, load in ((a, 5), (b, 1)):
        await prov.register_service(
            {
                "id": "lb",
                "get_load": lambda load=load: load,
                "who": lambda cid=prov.config.client_id: cid,
                "slow": slow,
            }
        )
    return owner, a, b, gate


async def test_select_min_max_by_function(connect, workspace_pair):
    owner, a, b, _ = await _balanced(connect, workspace_pair)
    for _ in range(3):
        svc = await owner.get_service("lb", {"mode": "select:min:get_load"})
        assert await svc.who() == b.config.client_id
        svc = await owner.get_service("lb", {"mode": "select:max:get_load"})
        assert await svc.who() == a.config.client_id
    svc = await owner.get_service("lb", {"mode": "select:first_success:get_load"})
    assert await svc.who() == a.config.client_id
    # Nobody has the function: the reference falls back to a random pick.
    svc = await owner.get_service("lb", {"mode": "select:min:no_such_fn", "select_timeout": 1})
    assert await svc.who() in (a.config.client_id, b.config.client_id)


async def test_select_mode_format_errors(connect, workspace_pair):
    owner, _, _, _ = await _balanced(connect, workspace_pair)
    exc = await expect_error(owner.get_service("lb", {"mode": "select:min"}))
    assert "Invalid select mode format" in str(exc), str(exc)
    exc = await expect_error(owner.get_service("lb", {"mode": "select:avg:get_load"}))
    assert "Unknown selection criteria" in str(exc), str(exc)
    exc = await expect_error(owner.get_service("lb", {"mode": "loudest"}))
    assert "Invalid mode" in str(exc), str(exc)


@pytest.mark.rhizo_only  # the reference measures only clients named `…__rlb`
async def test_min_load_avoids_the_busy_provider(connect, workspace_pair):
    owner, a, b, gate = await _balanced(connect, workspace_pair)
    busy = await owner.get_service(f"{a.config.client_id}:lb")
    pending = asyncio.ensure_future(busy.slow())
    try:
        await asyncio.sleep(0.5)  # the call is now in flight at provider a
        for _ in range(5):
            svc = await owner.get_service("lb", {"mode": "min_load"})
            assert await svc.who() == b.config.client_id
            info = await owner.get_service_info("lb", {"mode": "min_load"})
            assert info["id"].endswith(f"/{b.config.client_id}:lb")
    finally:
        gate.set()
    assert await asyncio.wait_for(pending, 10) == "done"


# --------------------------------------------------------------------------- visibility


async def test_authorized_workspaces_hidden_from_admitted_callers(connect):
    owner = await connect(client_id=unique_id("authz"))
    guest = await connect()
    await owner.register_service(
        {
            "id": "shared",
            "config": {"visibility": "protected", "authorized_workspaces": [guest.config.workspace]},
            "hi": lambda: "hi",
        }
    )
    sid = f"{owner.config.workspace}/{owner.config.client_id}:shared"
    svc = await guest.get_service(sid)
    assert await svc.hi() == "hi"
    assert "authorized_workspaces" not in svc["config"], svc["config"]
    info = await guest.get_service_info(sid)
    assert info["config"].get("authorized_workspaces") is None, info["config"]
    listed = await guest.list_services(owner.config.workspace)
    assert [s["id"] for s in listed] == [sid]
    assert listed[0]["config"].get("authorized_workspaces") is None
    # The owner's workspace sees the list.
    mine = await owner.get_service_info(sid)
    assert mine["config"]["authorized_workspaces"] == [guest.config.workspace]


# --------------------------------------------------------------------------- case conversion


async def test_get_service_case_conversion(connect):
    prov = await connect(client_id=unique_id("case"))
    await prov.register_service(
        {"id": "cc", "config": {"visibility": "public"}, "my_func": lambda: 1, "doThing": lambda: 2}
    )
    sid = f"{prov.config.workspace}/{prov.config.client_id}:cc"
    cons = await connect()
    camel = await cons.get_service(sid, {"case_conversion": "camel"})
    assert "myFunc" in camel and "my_func" not in camel
    assert await camel["myFunc"]() == 1
    snake = await cons.get_service(sid, {"case_conversion": "snake"})
    assert "do_thing" in snake and "doThing" not in snake
    assert await snake["do_thing"]() == 2


# --------------------------------------------------------------------------- HTTP


async def test_http_tilde_runs_manager_functions(server_url, connect):
    owner = await connect(client_id=unique_id("tilde"))
    await owner.register_service({"id": "visible", "f": lambda: 1})
    ws = owner.config.workspace
    token = await owner.generate_token({"permission": "read"})
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(f"{server_url}/public/services/~/list_services")
        assert r.status_code == 200, r.text
        assert isinstance(r.json(), list)
        r = await http.get(f"{server_url}/{ws}/services/~/list_services", headers=auth)
        assert r.status_code == 200, r.text
        assert any(s["id"].endswith(":visible") for s in r.json()), r.text
        r = await http.post(f"{server_url}/{ws}/services/~/list_services", json={}, headers=auth)
        assert r.status_code == 200, r.text
        assert any(s["id"].endswith(":visible") for s in r.json()), r.text
        r = await http.get(f"{server_url}/{ws}/services/~/check_status", headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "ready"


async def test_apps_route_unknown_workspace(server_url):
    ws = unique_id("ws-nowhere")
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(f"{server_url}/{ws}/apps/anything/")
    assert r.status_code == 404, r.text
    assert r.text == f"Workspace {ws} does not exist or is not accessible"
