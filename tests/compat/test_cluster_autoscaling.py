"""The autoscaler across three rhizo nodes behind one Redis (apps-workers.md §5.4; issue 15):
the node holding an instance's connection samples its load and publishes it to Redis, so
the leader — whichever node took the lease first — scales an app whose instances are
connected elsewhere; one leader starts each instance, and when the leader dies another
takes the lease over within its TTL and carries on.

A cluster of its own (``test_cluster``'s nodes and balancer) whose nodes decide every
500 ms (``RHIZO_AUTOSCALE_TICK_MS``); the app is ``test_autoscaling``'s python-eval
serving script with short cooldowns."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from artifact_helpers import user_token
from compat_helpers import unique_id
from test_autoscaling import SERVING_SCRIPT, _manifest, _until
from test_cluster import Cluster

pytestmark = pytest.mark.rhizo_only

LEASE_TTL = 15.0


class AutoscaleCluster(Cluster):
    def env(self, i: int) -> dict[str, str]:
        return {**super().env(i), "RHIZO_AUTOSCALE_TICK_MS": "500"}

    def pid(self, i: int) -> int:
        return self.nodes[i][0].process.pid


@pytest.fixture(scope="module")
def scaling_cluster(is_external):
    if is_external:
        pytest.skip("starts rhizo nodes of its own")
    c = AutoscaleCluster()
    yield c
    c.close()


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (the python-eval instances a node started)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


async def _metrics(http: httpx.AsyncClient, port: int) -> dict:
    """A node's autoscaler figures: leader (0/1), up, down; None when it does not answer."""
    try:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics", timeout=2)).text
    except httpx.HTTPError:
        return None
    out = {"leader": 0, "up": 0, "down": 0}
    for line in text.splitlines():
        if line.startswith("rhizo_autoscaler_leader "):
            out["leader"] = int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("rhizo_autoscaler_instances_total{"):
            out[line.split('"')[1]] = int(float(line.rsplit(" ", 1)[1]))
    return out


async def _all_metrics(http, cluster, nodes) -> dict[int, dict]:
    return {i: await _metrics(http, cluster.ports[i]) for i in nodes}


@pytest.mark.timeout_s(170)
async def test_the_leader_scales_instances_on_other_nodes_and_a_new_leader_takes_over(
    scaling_cluster,
):
    from conftest import TEST_JWT_SECRET
    from hypha_rpc import connect_to_server

    cluster = scaling_cluster
    http = httpx.AsyncClient()
    clients = []

    async def on(i: int):
        cluster.balancer.pin(i)
        before = len(cluster.balancer.placements)
        c = await asyncio.wait_for(
            connect_to_server({"server_url": cluster.url, "workspace": ws, "token": token}), 20
        )
        assert cluster.balancer.placements[before] == i, "the balancer placed the client elsewhere"
        clients.append(c)
        return c

    user_id = unique_id("clscale").lower()
    ws = f"ws-user-{user_id}"
    token = user_token(user_id, ws, TEST_JWT_SECRET)
    monitor = None
    stop_load = asyncio.Event()
    load_task = None
    try:
        # One leader, whichever node took the lease first.
        async def one_leader():
            m = await _all_metrics(http, cluster, range(3))
            leaders = [i for i, x in m.items() if x and x["leader"] == 1]
            return leaders if len(leaders) == 1 else None

        (leader,) = await _until(one_leader, 10, "one autoscaler leader")
        home = next(i for i in range(3) if i != leader)

        api = await on(home)
        controller = await api.get_service("public/server-apps")
        app = await controller.install(
            source=SERVING_SCRIPT,
            manifest=_manifest("Cluster scaled echo", min_instances=1, max_instances=3),
            overwrite=True,
        )
        app_id = app["id"]

        # The first instance must be connected to a node that does not lead (only that
        # node can sample its load). Its python-eval worker (one per node, picked at
        # random) connects it to its own node: start until it lands elsewhere than the
        # leader. Where it landed: the node whose client count in the workspace
        # (`rhizo_workspace_clients`) exceeds the test's own clients there.
        mine = {home: 1}

        async def app_clients() -> dict[int, int]:
            out = {}
            for i in range(3):
                if cluster.nodes[i][0].process.poll() is not None:
                    continue
                text = (await http.get(f"http://127.0.0.1:{cluster.ports[i]}/metrics")).text
                n = 0
                for line in text.splitlines():
                    if line.startswith(f'rhizo_workspace_clients{{workspace="{ws}"}} '):
                        n = int(float(line.rsplit(" ", 1)[1]))
                out[i] = n - mine.get(i, 0)
            return out

        async def one_instance_on():
            extra = await app_clients()
            return [i for i, n in extra.items() if n > 0] if sum(extra.values()) == 1 else None

        for _attempt in range(8):
            first = await controller.start(app_id, wait_for_service="echo")
            (instance_node,) = await _until(one_instance_on, 10, "the first instance's node")
            if instance_node != leader:
                break
            await controller.stop(first["id"], False)
            await _until(
                lambda: _zero(app_clients), 10, "the instance on the leader gone"
            )
        else:
            pytest.fail("every first instance landed on the leader's worker")
        loader = next(i for i in range(3) if i not in (leader, instance_node))
        print(f"\nleader: node {leader}; first instance on node {instance_node}; load from node {loader}")

        seen: set[str] = set()
        most = 0

        async def current() -> list[str]:
            return sorted(
                s["id"]
                for s in await controller.list_running()
                if s.get("app_id") == app_id and s.get("status") != "stopped"
            )

        async def watch():
            nonlocal most
            while True:
                try:
                    ids = await current()
                except Exception:  # noqa: BLE001 - a node restarting; next round
                    await asyncio.sleep(0.25)
                    continue
                seen.update(ids)
                most = max(most, len(ids))
                await asyncio.sleep(0.2)

        monitor = asyncio.create_task(watch())

        # Load from a client on the third node: calls reach the instances across nodes.
        load_api = await on(loader)
        mine[loader] = mine.get(loader, 0) + 1
        answered: dict[str, int] = {}
        failed: dict[str, int] = {}

        async def load():
            n = 0
            while not stop_load.is_set():
                try:
                    svc = await asyncio.wait_for(
                        load_api.get_service(f"echo@{app_id}", {"mode": "random"}), 10
                    )
                    who, x = await asyncio.wait_for(svc.echo(n), 10)
                    assert x == n
                    answered[who] = answered.get(who, 0) + 1
                except (asyncio.TimeoutError, Exception) as e:  # noqa: BLE001 - an instance went
                    why = f"{type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"
                    failed[why] = failed.get(why, 0) + 1
                    await asyncio.sleep(0.1)
                n += 1
                await asyncio.sleep(0.02)

        t0 = time.monotonic()
        load_task = asyncio.create_task(load())

        async def two_or_more():
            ids = await current()
            return ids if len(ids) >= 2 else None

        scaled = await _until(two_or_more, 30, "a second instance (the leader sees remote load)")
        print(f"\ncluster autoscaling: {len(scaled)} instances {time.monotonic() - t0:.1f}s after the load started")
        assert first["id"] in scaled

        # Every instance the autoscaler started was started by the leader, once.
        # (And no start is in progress when the leader is killed: a start whose node dies
        # midway leaves its record `starting`, which no node finishes or stops.)
        async def counted():
            m = await _all_metrics(http, cluster, range(3))
            ups = {i: x["up"] for i, x in m.items()}
            records = [
                s for s in await controller.list_running() if s.get("app_id") == app_id
            ]
            settled = all(s.get("status") == "running" for s in records)
            return ups if settled and sum(ups.values()) == len(seen) - 1 else None

        ups = await _until(counted, 15, "one scale event per instance started")
        assert all(n == 0 for i, n in ups.items() if i != leader), ups
        assert most <= 3, (most, seen)

        # The leader dies (with the instances its worker ran, as a machine would).
        victims = _descendants(cluster.pid(leader))
        cluster.kill(leader)
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        t_kill = time.monotonic()
        survivors = [i for i in range(3) if i != leader]

        async def new_leader():
            m = await _all_metrics(http, cluster, survivors)
            leaders = [i for i, x in m.items() if x and x["leader"] == 1]
            return leaders if len(leaders) == 1 else None

        (successor,) = await _until(new_leader, LEASE_TTL + 5, "a new leader")
        took = time.monotonic() - t_kill
        print(f"cluster autoscaling: node {successor} leads {took:.1f}s after the leader was killed")
        assert took <= LEASE_TTL + 2, took

        # Under load still, the new leader keeps at least two instances (starting what
        # died with the old leader, if it must).
        await _until(two_or_more, 30, "two instances under the new leader")
        assert most <= 3, (most, seen)

        # No load: the new leader scales back down to min_instances.
        stop_load.set()
        await asyncio.wait_for(load_task, 15)
        load_task = None
        t1 = time.monotonic()

        async def back_to_one():
            ids = await current()
            return ids if len(ids) == 1 else None

        try:
            await _until(back_to_one, 40, "back to one instance")
        except AssertionError:
            left = [
                (s["id"], s.get("status"), s.get("worker_id"))
                for s in await controller.list_running()
                if s.get("app_id") == app_id
            ]
            m = await _all_metrics(http, cluster, survivors)
            raise AssertionError(("not back to one instance", left, m, await app_clients()))
        print(f"cluster autoscaling: back to 1 instance {time.monotonic() - t1:.1f}s after the load stopped")
        await asyncio.sleep(2)
        assert len(await current()) == 1, "never below min_instances"
        m = await _all_metrics(http, cluster, survivors)
        assert m[successor]["down"] >= 1, ("the new leader scaled down", m)
        other = next(i for i in survivors if i != successor)
        assert m[other]["up"] == 0 and m[other]["down"] == 0, ("only leaders scale", m)
        assert most <= 3, (most, seen)
        print(f"cluster autoscaling: answered by {answered}; failed: {failed}")
        # Calls may fail while the killed node's clients are being declared gone.
        assert answered, (answered, failed)
    finally:
        stop_load.set()
        for t in (load_task, monitor):
            if t is not None:
                t.cancel()
                try:
                    await t
                except BaseException:  # noqa: BLE001
                    pass
        try:
            for s in await asyncio.wait_for(controller.list_running(), 10):
                await asyncio.wait_for(controller.stop(s["id"], False), 10)
        except BaseException:  # noqa: BLE001 - teardown must not mask the result
            pass
        for c in reversed(clients):
            try:
                await asyncio.wait_for(c.disconnect(), 10)
            except BaseException:  # noqa: BLE001
                pass
        await http.aclose()


async def _zero(app_clients):
    return sum((await app_clients()).values()) == 0
