"""Client-to-client calls through the router (protocol.md §2, §3, §5.2)."""

import asyncio

from compat_helpers import expect_error, unique_id


async def _cross_workspace(connect, service: dict):
    """Register ``service`` (public) on a provider; return (provider, consumer, proxy)."""
    prov = await connect(client_id=unique_id("prov"))
    service = dict(service)
    service.setdefault("id", "svc")
    service.setdefault("config", {})
    service["config"].setdefault("visibility", "public")
    info = await prov.register_service(service)
    cons = await connect(client_id=unique_id("cons"))
    assert cons.config.workspace != prov.config.workspace
    return prov, cons, await cons.get_service(info["id"])


async def test_simple_sync_and_async_functions(connect):
    async def slow_double(x):
        await asyncio.sleep(0.2)
        return 2 * x

    _, _, svc = await _cross_workspace(
        connect, {"inc": lambda x: x + 1, "slow_double": slow_double, "none": lambda: None}
    )
    assert await svc.inc(41) == 42
    assert await svc.slow_double(21) == 42
    assert await svc.none() is None
    # several calls in flight at once
    results = await asyncio.gather(*(svc.inc(i) for i in range(20)))
    assert results == [i + 1 for i in range(20)]


async def test_callback_argument(connect):
    async def apply(fn, x):
        return await fn(x)

    _, _, svc = await _cross_workspace(connect, {"apply": apply})
    assert await svc.apply(lambda v: v * 2, 21) == 42

    async def async_cb(v):
        await asyncio.sleep(0.05)
        return f"async:{v}"

    assert await svc.apply(async_cb, "x") == "async:x"


async def test_callback_called_many_times(connect):
    async def each(fn, n):
        return [await fn(i) for i in range(n)]

    async def fire_and_collect(on_item, n):
        # callbacks invoked concurrently
        return sorted(await asyncio.gather(*(on_item(i) for i in range(n))))

    _, _, svc = await _cross_workspace(connect, {"each": each, "fan": fire_and_collect})
    calls = []

    def on_item(i):
        calls.append(i)
        return i * i

    assert await svc.each(on_item, 10) == [i * i for i in range(10)]
    assert calls == list(range(10))
    calls.clear()
    assert await svc.fan(on_item, 10) == sorted(i * i for i in range(10))
    assert sorted(calls) == list(range(10))


async def test_rintf_callback_object_outlives_the_call(connect):
    # Plain callbacks are session-scoped (released when the call returns). An object
    # marked `_rintf: True` becomes a temporary service on the consumer, so the provider
    # may keep it and call it later (protocol.md §5.2).
    stored = {}

    def keep(obj):
        stored["obj"] = obj
        return True

    async def fire(x):
        return await stored["obj"].notify(x)

    _, _, svc = await _cross_workspace(connect, {"keep": keep, "fire": fire})
    got = []
    listener = {"_rintf": True, "notify": lambda x: got.append(x) or len(got)}
    assert await svc.keep(listener) is True
    assert await svc.fire("a") == 1
    assert await svc.fire("b") == 2
    assert got == ["a", "b"]


async def test_async_generator(connect):
    async def count(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield {"i": i}

    _, _, svc = await _cross_workspace(connect, {"count": count})
    gen = await svc.count(5)
    items = [item async for item in gen]
    assert items == [{"i": i} for i in range(5)]


async def test_sync_generator(connect):
    def squares(n):
        for i in range(n):
            yield i * i

    _, _, svc = await _cross_workspace(connect, {"squares": squares})
    # the client exposes remote (sync or async) generators as async generators
    gen = await svc.squares(6)
    assert [x async for x in gen] == [0, 1, 4, 9, 16, 25]


async def test_keyword_and_default_arguments(connect):
    def f(a, b=10, c=100):
        return [a, b, c]

    _, _, svc = await _cross_workspace(connect, {"f": f})
    assert await svc.f(1, b=2) == [1, 2, 100]
    assert await svc.f(1) == [1, 10, 100]
    assert await svc.f(1, 2, 3) == [1, 2, 3]
    assert await svc.f(a=5, c=7) == [5, 10, 7]


async def test_require_context_is_server_stamped(connect):
    def whoami(x, context=None):
        return {
            "x": x,
            "ws": context["ws"],
            "from": context["from"],
            "to": context["to"],
            "user_id": context["user"]["id"],
        }

    def plain(context=None):
        return context is None  # not listed in require_context -> no context

    prov, cons, svc = await _cross_workspace(
        connect,
        {"config": {"require_context": ["whoami"]}, "whoami": whoami, "plain": plain},
    )
    got = await svc.whoami(7)
    assert got["x"] == 7
    assert got["ws"] == cons.config.workspace
    assert got["from"] == f"{cons.config.workspace}/{cons.config.client_id}"
    assert got["user_id"] == cons.config.user["id"]
    assert got["to"] == f"{prov.config.workspace}/{prov.config.client_id}"
    assert await svc.plain() is True


async def test_require_context_same_workspace_member(workspace_pair):
    owner, member = workspace_pair

    def whoami(context=None):
        return [context["ws"], context["from"], context["user"]["id"]]

    await owner.register_service(
        {"id": "ctx", "config": {"require_context": True}, "whoami": whoami}
    )
    svc = await member.get_service("ctx")
    ws = owner.config.workspace
    assert await svc.whoami() == [
        ws,
        f"{ws}/{member.config.client_id}",
        member.config.user["id"],
    ]


async def test_remote_exception_propagates(connect):
    def boom(msg):
        raise ValueError(f"boom: {msg}")

    _, _, svc = await _cross_workspace(connect, {"boom": boom, "ok": lambda: "ok"})
    exc = await expect_error(svc.boom("xyz"))
    assert "boom: xyz" in str(exc), str(exc)
    assert await svc.ok() == "ok"  # the service still works afterwards


async def test_long_running_call_survives_heartbeats(connect):
    async def slow(seconds):
        await asyncio.sleep(seconds)
        return "done"

    prov = await connect(client_id=unique_id("prov"))
    info = await prov.register_service(
        {"id": "slow", "config": {"visibility": "public"}, "slow": slow}
    )
    # method_timeout 2 s: the call only succeeds if the provider's heartbeats (every
    # timeout/2) reach the caller through the server and keep resetting its timer
    cons = await connect(method_timeout=2)
    svc = await cons.get_service(info["id"])
    assert await svc.slow(5) == "done"
