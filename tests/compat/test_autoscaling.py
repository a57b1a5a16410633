"""The autoscaler driving real app instances (apps-workers.md §5; issue 15): an app on the
built-in python-eval worker with ``autoscaling.enabled``, loaded by the real hypha-rpc
client, gets more instances under load, fewer when the load stops, none when idle with
``min_instances: 0`` — and the next ``get_service("svc@app")`` starts one again.

A server of its own decides every 500 ms (``RHIZO_AUTOSCALE_TICK_MS``) so that the
scaling happens within seconds; the cooldowns and the panic window (``stable_window``) are
made short by the manifests."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from hypha_rpc import connect_to_server

from artifact_helpers import user_token
from compat_helpers import unique_id

pytestmark = pytest.mark.rhizo_only

SERVING_SCRIPT = r'''
import asyncio, os
from hypha_rpc import connect_to_server

async def main():
    me = os.environ["HYPHA_CLIENT_ID"]
    server = await connect_to_server({
        "server_url": os.environ["HYPHA_SERVER_URL"],
        "workspace": os.environ["HYPHA_WORKSPACE"],
        "client_id": me,
        "token": os.environ["HYPHA_TOKEN"],
    })
    await server.register_service({"id": "default", "config": {"visibility": "public"},
                                   "setup": lambda: None})
    async def slow(x, seconds=0.5):
        await asyncio.sleep(seconds)
        return [me, x]

    await server.register_service({"id": "echo", "config": {"visibility": "public"},
                                   "echo": lambda x: [me, x], "slow": slow})
    await server.serve()

asyncio.run(main())
'''


def _manifest(name: str, **autoscaling) -> dict:
    return {
        "name": name,
        "type": "python-eval",
        "version": "0.1.0",
        "entry_point": "main.py",
        "wait_for_exit": False,
        "service_selection_mode": "random",
        "autoscaling": {
            "enabled": True,
            "target_requests_per_instance": 60,
            "scale_up_cooldown": 1,
            "scale_down_cooldown": 3,
            "stable_window": 4,
            **autoscaling,
        },
    }


@pytest.fixture(scope="module")
def autoscale_url(request):
    from conftest import EXTERNAL_URL, _start_rhizo, _stop_rhizo

    if EXTERNAL_URL:
        pytest.skip("needs a rhizo server of its own (RHIZO_AUTOSCALE_TICK_MS)")
    server, stop, workdir = _start_rhizo(extra_env={"RHIZO_AUTOSCALE_TICK_MS": "500"})
    yield server.url
    _stop_rhizo(request, server, stop, workdir)


@pytest.fixture
async def user(autoscale_url):
    from conftest import TEST_JWT_SECRET

    user_id = unique_id("scaler").lower()
    ws = f"ws-user-{user_id}"
    token = user_token(user_id, ws, TEST_JWT_SECRET)
    api = await asyncio.wait_for(
        connect_to_server({"server_url": autoscale_url, "workspace": ws, "token": token}), 20
    )
    controller = await api.get_service("public/server-apps")
    yield api, controller, autoscale_url
    try:
        for s in await controller.list_running():
            await controller.stop(s["id"], False)
    finally:
        await asyncio.wait_for(api.disconnect(), 10)


async def _instances(controller, app_id: str) -> list[str]:
    return sorted(
        s["id"]
        for s in await controller.list_running()
        if s.get("app_id") == app_id and s.get("status") == "running"
    )


async def _until(predicate, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} within {timeout}s; last: {last!r}")


@pytest.mark.timeout_s(100)
async def test_instances_follow_the_load_up_and_down(user):
    api, controller, url = user
    app = await controller.install(
        source=SERVING_SCRIPT,
        manifest=_manifest("Scaled echo", min_instances=1, max_instances=3),
        overwrite=True,
    )
    app_id = app["id"]
    assert await _instances(controller, app_id) == []
    first = await controller.start(app_id, wait_for_service="echo")
    assert await _instances(controller, app_id) == [first["id"]]

    # Load: ~50 calls/s from a client that resolves the service anew for every call
    # without a mode (the app's `service_selection_mode: "random"` picks among the
    # instances), far above 60 requests/min per instance.
    answered_by: dict[str, float] = {}
    stop = asyncio.Event()
    calls = 0

    async def load():
        nonlocal calls
        while not stop.is_set():
            svc = await api.get_service(f"echo@{app_id}")
            who, x = await svc.echo(calls)
            assert x == calls
            calls += 1
            answered_by.setdefault(who, time.monotonic())
            await asyncio.sleep(0.02)

    t0 = time.monotonic()
    task = asyncio.create_task(load())
    try:
        scaled = await _until(
            lambda: _instances_at_least(controller, app_id, 2), 20, "a second instance"
        )
        # The new instance serves: some call is answered by another client than the first.
        await _until(lambda: _served_by_two(answered_by), 15, "a call answered by a new instance")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    second = sorted(answered_by.values())[1] - t0
    rate = calls / (time.monotonic() - t0)
    print(f"\nautoscaling: {len(scaled)} instances; second instance serving {second:.1f}s "
          f"after the load started ({rate:.0f} calls/s)")
    assert first["id"] in scaled
    assert len(scaled) <= 3

    # No load: back to min_instances (one at a time, 3 s apart, after the panic window).
    t1 = time.monotonic()
    left = await _until(
        lambda: _instances_exactly(controller, app_id, 1), 25, "back to one instance"
    )
    print(f"autoscaling: back to 1 instance {time.monotonic() - t1:.1f}s after the load stopped")
    assert len(left) == 1
    # ...and never below it.
    await asyncio.sleep(2)
    assert len(await _instances(controller, app_id)) == 1

    # The scale events are counted in /metrics.
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{url}/metrics")).text
    counts = {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("rhizo_autoscaler_instances_total{")
    }
    assert counts.get("up", 0) >= 2 and counts.get("down", 0) >= 2, counts
    assert "rhizo_autoscaler_leader 1" in text
    assert f'rhizo_app_instances{{workspace="{api.config.workspace}",app="{app_id}"}} 1' in text, text


@pytest.mark.timeout_s(60)
async def test_an_idle_app_scales_to_zero_and_the_next_call_starts_it(user):
    api, controller, _ = user
    app = await controller.install(
        source=SERVING_SCRIPT,
        manifest=_manifest("Zero echo", min_instances=0, max_instances=2),
        overwrite=True,
    )
    app_id = app["id"]
    await controller.start(app_id, wait_for_service="echo")
    assert len(await _instances(controller, app_id)) == 1
    t0 = time.monotonic()
    await _until(lambda: _instances_exactly(controller, app_id, 0, truthy=True), 20,
                 "scale to zero")
    print(f"\nautoscaling: scaled to zero {time.monotonic() - t0:.1f}s after start (idle)")

    # The next call starts an instance (lazy start) and is answered by it.
    svc = await asyncio.wait_for(api.get_service(f"echo@{app_id}"), 30)
    who, x = await svc.echo(7)
    assert x == 7
    running = await _instances(controller, app_id)
    assert len(running) == 1 and running[0].split("/")[-1] == who.split("/")[-1], (running, who)


@pytest.mark.timeout_s(80)
async def test_edit_app_changes_the_autoscaling_config_live(user):
    """`edit_app(autoscaling_config=…)` then `commit_app`: the next passes use the new
    config — here a higher `min_instances` pre-warms instances without any load, and a
    lower `max_instances` later stops the excess."""
    api, controller, _ = user
    app = await controller.install(
        source=SERVING_SCRIPT,
        manifest=_manifest("Edited echo", min_instances=1, max_instances=3),
        overwrite=True,
    )
    app_id = app["id"]
    await controller.start(app_id, wait_for_service="echo")
    assert len(await _instances(controller, app_id)) == 1
    config = dict(_manifest("x")["autoscaling"], min_instances=3, max_instances=3)
    await controller.edit_app(app_id, autoscaling_config=config)
    await controller.commit_app(app_id)
    await _until(lambda: _instances_exactly(controller, app_id, 3), 30, "pre-warmed to three")
    config = dict(config, min_instances=1, max_instances=2)
    await controller.edit_app(app_id, autoscaling_config=config)
    await controller.commit_app(app_id)
    await _until(lambda: _instances_exactly(controller, app_id, 2), 30, "capped at two")
    svc = await api.get_service(f"echo@{app_id}")
    assert (await svc.echo(1))[1] == 1


@pytest.mark.timeout_s(60)
async def test_the_concurrency_metric_scales_on_calls_in_flight(user):
    """`metric_type: "concurrency"`: eight callers each waiting on a 0.5 s call keep ~8
    calls in flight at one instance, four times its target of 2 → more instances, from
    the router's in-flight count (few requests per minute: the load metric would not)."""
    api, controller, _ = user
    manifest = _manifest("Slow echo", min_instances=1, max_instances=3)
    manifest["autoscaling"].update(
        {"metric_type": "concurrency", "target_concurrency_per_instance": 2, "target_requests_per_instance": 100000}
    )
    app = await controller.install(source=SERVING_SCRIPT, manifest=manifest, overwrite=True)
    app_id = app["id"]
    await controller.start(app_id, wait_for_service="echo")
    svc = await api.get_service(f"echo@{app_id}")
    stop = asyncio.Event()

    async def caller(i):
        while not stop.is_set():
            assert (await svc.slow(i))[1] == i

    tasks = [asyncio.create_task(caller(i)) for i in range(8)]
    try:
        scaled = await _until(
            lambda: _instances_at_least(controller, app_id, 2), 20, "a second instance"
        )
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert 2 <= len(scaled) <= 3


@pytest.mark.timeout_s(80)
async def test_a_scale_down_lets_the_calls_in_flight_finish(user):
    """An instance chosen for a scale-down is stopped once its calls in flight are
    answered (within a 10 s grace), not while a caller waits on it: two instances each
    serving a 4 s call, `max_instances` lowered to 1 → both calls are answered, and only
    then does one instance stop."""
    api, controller, _ = user
    app = await controller.install(
        source=SERVING_SCRIPT,
        manifest=_manifest("Drained echo", min_instances=2, max_instances=2),
        overwrite=True,
    )
    app_id = app["id"]
    await controller.start(app_id, wait_for_service="echo")
    two = await _until(lambda: _instances_exactly(controller, app_id, 2), 30, "two instances")
    ws = api.config.workspace
    services = [await api.get_service(f"{ws}/{sid.split('/')[-1]}:echo") for sid in two]
    calls = [asyncio.ensure_future(svc.slow(i, 4)) for i, svc in enumerate(services)]
    await asyncio.sleep(0.5)
    config = dict(_manifest("x")["autoscaling"], min_instances=1, max_instances=1)
    await controller.edit_app(app_id, autoscaling_config=config)
    await controller.commit_app(app_id)
    await asyncio.sleep(2)
    assert len(await _instances(controller, app_id)) == 2, "stopped while a call was in flight"
    answers = await asyncio.wait_for(asyncio.gather(*calls), 15)
    assert sorted(x for _, x in answers) == [0, 1]
    assert {who.split("/")[-1] for who, _ in answers} == {sid.split("/")[-1] for sid in two}
    left = await _until(lambda: _instances_exactly(controller, app_id, 1), 15, "one instance")
    assert left[0] in two


async def _instances_at_least(controller, app_id, n):
    ids = await _instances(controller, app_id)
    return ids if len(ids) >= n else None


async def _instances_exactly(controller, app_id, n, truthy=False):
    ids = await _instances(controller, app_id)
    if len(ids) == n:
        return ids or (["none"] if truthy else ids)
    return None


async def _served_by_two(answered_by):
    return len(answered_by) >= 2
