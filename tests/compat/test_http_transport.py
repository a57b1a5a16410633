"""HTTP streaming transport: ``transport="http"`` (protocol.md §7, workspace-api.md §8.5).

The real client opens ``GET /rpc`` for the downstream (4-byte big-endian length + msgpack
records) and sends every frame with ``POST /rpc``; it must interoperate with WebSocket
clients in every direction.
"""

import asyncio

import httpx
import msgpack
import pytest

from compat_helpers import EventLog, eventually, expect_error, unique_id


class _Records:
    """Reads the length-prefixed msgpack records of a streaming response."""

    def __init__(self, response):
        self._chunks = response.aiter_bytes()
        self._buf = b""
        self.seen = []

    async def _next(self):
        while True:
            if len(self._buf) >= 4:
                n = int.from_bytes(self._buf[:4], "big")
                if len(self._buf) >= 4 + n:
                    payload, self._buf = self._buf[4 : 4 + n], self._buf[4 + n :]
                    # control records hold exactly one msgpack object
                    obj = msgpack.unpackb(payload, raw=False, strict_map_key=False)
                    self.seen.append(obj)
                    return obj
            self._buf += await self._chunks.__anext__()

    async def until(self, want, timeout: float):
        """Read records until ``want(record)`` is true; return that record."""

        async def _loop():
            while True:
                obj = await self._next()
                if want(obj):
                    return obj

        try:
            return await asyncio.wait_for(_loop(), timeout)
        except (asyncio.TimeoutError, StopAsyncIteration):
            raise AssertionError(f"no matching record within {timeout}s; seen: {self.seen!r}") from None


def _is_type(t):
    return lambda r: isinstance(r, dict) and r.get("type") == t


async def test_http_connect_config(connect):
    cid = unique_id("http")
    c = await connect(client_id=cid, transport="http")
    cfg = c.config
    assert isinstance(cfg.workspace, str) and cfg.workspace
    assert cfg.client_id == cid
    assert isinstance(cfg.manager_id, str) and cfg.manager_id and "/" not in cfg.manager_id
    assert isinstance(cfg.reconnection_token, str) and cfg.reconnection_token
    # the manager answers over the stream
    svcs = await c.list_services()
    assert isinstance(svcs, list)


async def test_service_on_http_called_from_websocket(connect):
    prov = await connect(client_id=unique_id("hprov"), transport="http")

    async def slow_double(x):
        await asyncio.sleep(0.1)
        return 2 * x

    info = await prov.register_service(
        {
            "id": "calc",
            "config": {"visibility": "public"},
            "add": lambda a, b: a + b,
            "slow_double": slow_double,
            "blob": lambda n: b"\x01" * n,
        }
    )
    cons = await connect(client_id=unique_id("wcons"))
    svc = await cons.get_service(info["id"])
    assert await svc.add(2, 3) == 5
    assert await svc.slow_double(21) == 42
    assert await asyncio.gather(*(svc.add(i, 1) for i in range(20))) == [
        i + 1 for i in range(20)
    ]
    # a payload larger than the client's chunk size travels as message_cache chunks
    assert len(await svc.blob(600_000)) == 600_000


async def test_service_on_websocket_called_from_http(connect):
    prov = await connect(client_id=unique_id("wprov"))
    info = await prov.register_service(
        {
            "id": "calc",
            "config": {"visibility": "public"},
            "mul": lambda a, b: a * b,
            "echo": lambda v: v,
        }
    )
    cons = await connect(client_id=unique_id("hcons"), transport="http")
    svc = await cons.get_service(info["id"])
    assert await svc.mul(6, 7) == 42
    big = b"\x02" * 700_000
    assert await svc.echo(big) == big


async def test_callbacks_across_transports(connect):
    async def apply(fn, x):
        return await fn(x)

    # HTTP provider calls back into a WebSocket consumer ...
    hprov = await connect(client_id=unique_id("hprov"), transport="http")
    hinfo = await hprov.register_service(
        {"id": "apply", "config": {"visibility": "public"}, "apply": apply}
    )
    wcons = await connect(client_id=unique_id("wcons"))
    assert await (await wcons.get_service(hinfo["id"])).apply(lambda v: v * 2, 21) == 42

    # ... and a WebSocket provider calls back into an HTTP consumer.
    wprov = await connect(client_id=unique_id("wprov"))
    winfo = await wprov.register_service(
        {"id": "apply", "config": {"visibility": "public"}, "apply": apply}
    )
    hcons = await connect(client_id=unique_id("hcons"), transport="http")
    svc = await hcons.get_service(winfo["id"])
    assert await svc.apply(lambda v: f"cb:{v}", "x") == "cb:x"
    calls = []

    def on_item(i):
        calls.append(i)
        return i * i

    async def each(fn, n):
        return [await fn(i) for i in range(n)]

    await wprov.register_service(
        {"id": "each", "config": {"visibility": "public"}, "each": each}
    )
    each_svc = await hcons.get_service(f"{wprov.config.workspace}/{wprov.config.client_id}:each")
    assert await each_svc.each(on_item, 5) == [0, 1, 4, 9, 16]
    assert calls == [0, 1, 2, 3, 4]


async def test_generated_token_joins_over_http(connect):
    owner = await connect(client_id=unique_id("owner"))
    ws = owner.config.workspace
    token = await owner.generate_token({"permission": "read_write"})
    mid = unique_id("hmember")
    member = await connect(client_id=mid, workspace=ws, token=token, transport="http")
    assert member.config.workspace == ws
    await member.register_service({"id": "m", "hello": lambda n: f"hello {n}"})
    svc = await owner.get_service(f"{mid}:m")
    assert await svc.hello("owner") == "hello owner"
    assert await member.ping(owner.config.client_id) == "pong"


@pytest.mark.rhizo_only  # the reference sends no client_disconnected for a closed stream
@pytest.mark.timeout_s(40)
async def test_http_disconnect_is_seen_by_websocket_peers(connect):
    """Closing the stream ends the client like a closed WebSocket: its workspace hears
    client_disconnected, calls to it fail at once and its services are gone."""
    owner = await connect(client_id=unique_id("owner"))
    token = await owner.generate_token({"permission": "read_write"})
    mid = unique_id("hmember")
    member = await connect(
        client_id=mid, workspace=owner.config.workspace, token=token, transport="http"
    )

    async def hang():
        await asyncio.sleep(60)

    await member.register_service({"id": "hang", "hang": hang, "ok": lambda: "ok"})
    svc = await owner.get_service(f"{mid}:hang")
    assert await svc.ok() == "ok"
    events = EventLog().attach(owner, "client_disconnected")
    pending = asyncio.ensure_future(svc.hang())
    await asyncio.sleep(0.5)
    await member.disconnect()
    await events.wait_for("client_disconnected", lambda m: m["data"]["id"] == mid, timeout=10)
    exc = await expect_error(pending, timeout=8)
    assert not isinstance(exc, TimeoutError), repr(exc)
    # its services are gone
    await expect_error(owner.get_service(f"{mid}:hang"), timeout=10)


@pytest.mark.timeout_s(40)
async def test_http_client_reconnects_after_losing_its_stream(server_url, connect):
    """The stream is taken over (as by a reconnection elsewhere); the client reconnects
    with its reconnection token, re-registers its services and is reachable again."""
    owner = await connect(client_id=unique_id("owner"))
    token = await owner.generate_token({"permission": "read_write"})
    mid = unique_id("hmember")
    member = await connect(
        client_id=mid, workspace=owner.config.workspace, token=token, transport="http"
    )
    await member.register_service({"id": "calc", "add": lambda a, b: a + b})
    assert await (await owner.get_service(f"{mid}:calc")).add(1, 2) == 3
    params = {
        "client_id": mid,
        "workspace": member.config.workspace,
        "reconnection_token": member.config.reconnection_token,
    }
    async with httpx.AsyncClient(timeout=15) as http:
        async with http.stream("GET", f"{server_url}/rpc", params=params) as taker:
            assert taker.status_code == 200
            await _Records(taker).until(_is_type("connection_info"), 10)

    async def usable_again():
        svc = await owner.get_service(f"{mid}:calc")
        assert await svc.add(2, 3) == 5

    await eventually(usable_again, timeout=25, attempt_timeout=3)


async def test_raw_stream_records_and_refresh(server_url):
    cid = unique_id("raw")
    async with httpx.AsyncClient(timeout=15) as http:
        async with http.stream(
            "GET",
            f"{server_url}/rpc",
            params={"client_id": cid},
            headers={
                "Accept": "application/x-msgpack-stream",
                "Content-Type": "application/msgpack",
            },
        ) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("application/x-msgpack-stream")
            records = _Records(resp)
            info = await records.until(_is_type("connection_info"), 10)
            ws = info["workspace"]
            assert info["client_id"] == cid and info["manager_id"]
            assert isinstance(info["reconnection_token"], str)
            r = await http.post(
                f"{server_url}/rpc",
                params={"client_id": cid, "workspace": ws},
                content=msgpack.packb({"type": "refresh_token"}),
                headers={"Content-Type": "application/msgpack"},
            )
            assert r.status_code == 200 and r.content == b""
            tok = await records.until(_is_type("reconnection_token"), 10)
            assert isinstance(tok["reconnection_token"], str) and tok["reconnection_token"]


async def test_new_stream_replaces_the_old_one(server_url):
    """A second GET for the same client (a reconnection) ends the first stream."""
    cid = unique_id("twice")
    async with httpx.AsyncClient(timeout=15) as http:
        async with http.stream("GET", f"{server_url}/rpc", params={"client_id": cid}) as first:
            assert first.status_code == 200
            old = _Records(first)
            info = await old.until(_is_type("connection_info"), 10)
            params = {
                "client_id": cid,
                "workspace": info["workspace"],
                "reconnection_token": info["reconnection_token"],
            }
            async with http.stream("GET", f"{server_url}/rpc", params=params) as second:
                assert second.status_code == 200
                new = _Records(second)
                info2 = await new.until(_is_type("connection_info"), 10)
                assert info2["workspace"] == info["workspace"]

                async def old_ends():
                    try:
                        while True:
                            await old._next()
                    except (StopAsyncIteration, httpx.HTTPError):
                        return

                await asyncio.wait_for(old_ends(), 10)
                # the new stream still works
                r = await http.post(
                    f"{server_url}/rpc",
                    params={"client_id": cid, "workspace": info["workspace"]},
                    content=msgpack.packb({"type": "refresh_token"}),
                )
                assert r.status_code == 200
                await new.until(_is_type("reconnection_token"), 10)


async def test_bad_reconnection_token_is_refused(server_url):
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(
            f"{server_url}/rpc",
            params={"client_id": unique_id("bad"), "reconnection_token": "not.a.jwt"},
        )
        assert r.status_code in (401, 403), r.status_code
        assert r.json()["success"] is False


async def test_post_without_stream_is_a_stateless_call(server_url, connect):
    """workspace-api.md §8.5: a POST /rpc for which no stream is open runs one call
    (``{type: "method", to: "<client>:<svc>", method, args?, kwargs?}``) for a caller with
    ``rw`` on the workspace and answers ``{success, result}`` as JSON."""
    owner = await connect(client_id=unique_id("stateless"))
    await owner.register_service(
        {"id": "calc", "config": {"visibility": "public"}, "add": lambda a, b=10: a + b}
    )
    ws, cid = owner.config.workspace, owner.config.client_id
    token = await owner.generate_token({"permission": "read_write"})
    reader = await owner.generate_token({"permission": "read"})
    auth = {"Authorization": f"Bearer {token}"}
    params = {"client_id": unique_id("caller"), "workspace": ws}

    def call(body, headers=auth, query=params):
        return http.post(f"{server_url}/rpc", params=query, headers=headers, content=body)

    async with httpx.AsyncClient(timeout=20) as http:
        r = await call(msgpack.packb({"type": "method", "to": f"{cid}:calc", "method": "add", "args": [1, 2]}))
        assert r.status_code == 200 and r.json() == {"success": True, "result": 3}, r.text
        r = await call(
            msgpack.packb({"type": "method", "to": f"{cid}:calc", "method": "add", "args": [1], "kwargs": {"b": 5}})
        )
        assert r.json() == {"success": True, "result": 6}, r.text
        # A full service id works too.
        r = await call(msgpack.packb({"type": "method", "to": f"{ws}/{cid}:calc", "method": "add", "args": [2, 2]}))
        assert r.json()["result"] == 4, r.text
        r = await call(msgpack.packb({"type": "method", "to": f"{cid}:calc", "method": "nope"}))
        assert r.status_code == 404 and r.json()["detail"] == "Method 'nope' not found", r.text
        r = await call(msgpack.packb({"type": "ping"}))
        assert r.status_code == 400 and "type='method'" in r.json()["detail"], r.text
        r = await call(msgpack.packb({"type": "method", "to": "calc", "method": "add"}))
        assert r.status_code == 400 and "client_id:service_id" in r.json()["detail"], r.text
        r = await call(b"\xc1")
        assert r.status_code == 400 and r.json()["success"] is False, r.text
        # rw is needed: a read-only token and an anonymous caller are refused.
        r = await call(
            msgpack.packb({"type": "method", "to": f"{cid}:calc", "method": "add", "args": [1]}),
            headers={"Authorization": f"Bearer {reader}"},
        )
        assert r.status_code == 403 and "Permission denied" in r.json()["detail"], r.text
        r = await call(msgpack.packb({"type": "method", "to": "x:y", "method": "y"}), headers={},
                       query={"client_id": unique_id("nostream"), "workspace": "ws-nope"})
        assert r.status_code == 403 and r.json()["success"] is False, r.text
        # client_id stays required.
        r = await http.post(f"{server_url}/rpc", params={"workspace": ws}, headers=auth, content=b"")
        assert r.status_code == 400


@pytest.mark.rhizo_only
async def test_post_with_foreign_credentials_is_403(server_url, connect):
    owner = await connect(client_id=unique_id("owner"))
    token = await owner.generate_token({"permission": "read_write"})
    cid = unique_id("hmember")
    member = await connect(
        client_id=cid, workspace=owner.config.workspace, token=token, transport="http"
    )
    body = msgpack.packb({"type": "refresh_token"})
    params = {"client_id": cid, "workspace": member.config.workspace}
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(f"{server_url}/rpc", params=params, content=body)
        assert r.status_code == 403
        r = await http.post(
            f"{server_url}/rpc",
            params=params,
            content=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200


@pytest.mark.rhizo_only
@pytest.mark.timeout_s(30)
async def test_stream_keepalive_within_15s(server_url):
    async with httpx.AsyncClient(timeout=25) as http:
        async with http.stream(
            "GET", f"{server_url}/rpc", params={"client_id": unique_id("idle")}
        ) as resp:
            assert resp.status_code == 200
            records = _Records(resp)
            await records.until(_is_type("connection_info"), 10)
            await records.until(_is_type("ping"), 17)


async def test_rpc_preflight(server_url):
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.options(
            f"{server_url}/rpc",
            headers={
                "Origin": "http://example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert r.status_code in (200, 204), r.status_code
        assert "access-control-allow-origin" in r.headers


def _stream_cookie_name(addr: str) -> str:
    """rhizo's name for the secret cookie of the stream of ``addr`` (FNV-1a 64 of it)."""
    h = 0xCBF29CE484222325
    for b in addr.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"rhizo_stream_{h:016x}"


@pytest.mark.rhizo_only
async def test_anonymous_stream_refuses_posts_from_others(server_url, connect):
    """The real client's session keeps the stream's secret cookie from its GET and sends
    it on every POST; once it has, a POST for its ``ws/cid`` from anyone else (no cookie,
    or another value) is refused with 403 and the client keeps working."""
    cid = unique_id("anon")
    c = await connect(client_id=cid, transport="http")
    await c.register_service({"id": "echo", "config": {"visibility": "public"}, "echo": lambda x: x})
    assert await (await c.get_service(f"{cid}:echo")).echo(5) == 5
    params = {"client_id": cid, "workspace": c.config.workspace}
    body = msgpack.packb({"type": "refresh_token"})
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(f"{server_url}/rpc", params=params, content=body)
        assert r.status_code == 403, r.status_code
        assert r.json()["success"] is False
        name = _stream_cookie_name(f"{c.config.workspace}/{cid}")
        r = await http.post(
            f"{server_url}/rpc",
            params=params,
            content=body,
            headers={"Cookie": f"{name}={'0' * 64}"},
        )
        assert r.status_code == 403, r.status_code
    assert await (await c.get_service(f"{cid}:echo")).echo(6) == 6
