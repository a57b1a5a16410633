"""The task queue ``public/queue`` (workspace-api.md §9.2) through the real hypha-rpc
client: push / pop / peek / get_length, pop timeouts, one workspace never seeing
another's queue, bad names and bounds, a pop waiting while another client pushes, and two
rhizo nodes sharing their queues through Redis (``--redis-uri``)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from hypha_rpc import connect_to_server

from artifact_helpers import user_token
from compat_helpers import expect_error, unique_id


async def _queue(client):
    return await client.get_service("public/queue")


async def test_push_pop_peek_and_length_in_fifo_order(connect):
    q = await _queue(await connect())
    name = unique_id("jobs")
    assert await q.get_length(name) == 0
    assert await q.peek(name) == []
    for i in range(3):
        assert await q.push(name, {"i": i, "data": b"\x00\x01", "tags": ["a"]}) == i + 1
    assert await q.get_length(name) == 3
    assert [t["i"] for t in await q.peek(name, 2)] == [0, 1], "peek answers pop order"
    assert [t["i"] for t in await q.peek(name, n=10)] == [0, 1, 2]
    first = await q.pop(name)
    assert first == {"i": 0, "data": b"\x00\x01", "tags": ["a"]}, "types survive"
    assert (await q.pop(name, timeout=0))["i"] == 1
    assert (await q.pop(name, 5))["i"] == 2
    assert await q.get_length(name) == 0


async def test_pop_on_an_empty_queue_waits_its_timeout_then_answers_none(connect):
    q = await _queue(await connect())
    name = unique_id("empty")
    started = time.monotonic()
    assert await q.pop(name, timeout=0) is None
    assert time.monotonic() - started < 1.0, "timeout 0 does not wait"
    started = time.monotonic()
    assert await q.pop(name, timeout=1.5) is None
    waited = time.monotonic() - started
    assert 1.3 <= waited < 5.0, waited


async def test_a_workspace_never_sees_another_workspaces_queue(connect):
    alice = await _queue(await connect(client_id=unique_id("alice")))
    bob_client = await connect(client_id=unique_id("bob"))
    bob = await _queue(bob_client)
    await alice.push("shared-name", {"secret": "alice"})
    assert await bob.get_length("shared-name") == 0
    assert await bob.peek("shared-name") == []
    assert await bob.pop("shared-name", timeout=0) is None
    await bob.push("shared-name", {"secret": "bob"})
    assert await alice.get_length("shared-name") == 1
    assert await alice.pop("shared-name", timeout=0) == {"secret": "alice"}
    assert await bob.pop("shared-name", timeout=0) == {"secret": "bob"}


async def test_bad_names_and_arguments_are_refused_clearly(connect):
    q = await _queue(await connect())
    for bad in ["", "has space", "-leading-dash", "a/b", "ws:q", "x" * 129]:
        err = await expect_error(q.push(bad, {"a": 1}))
        assert "Invalid queue name" in str(err), (bad, err)
        err = await expect_error(q.pop(bad, timeout=0))
        assert "Invalid queue name" in str(err), (bad, err)
    ok = "a" * 128
    assert await q.push(ok, {"a": 1}) == 1
    assert await q.pop(ok, timeout=0) == {"a": 1}
    err = await expect_error(q.push("jobs", "not a dict"))
    assert "task must be a dict" in str(err), err
    err = await expect_error(q.pop("jobs", timeout=301))
    assert "timeout must be between 0 and 300" in str(err), err
    err = await expect_error(q.peek("jobs", 0))
    assert "n must be between 1 and 100" in str(err), err
    err = await expect_error(q.push("jobs", {"blob": b"x" * (1024 * 1024 + 1)}), timeout=25)
    assert "task too large" in str(err), err
    assert await q.get_length("jobs") == 0


async def test_a_waiting_pop_gets_the_task_another_client_pushes(workspace_pair):
    owner, member = workspace_pair
    worker = await _queue(owner)
    producer = await _queue(member)
    name = unique_id("work")
    waiting = asyncio.ensure_future(worker.pop(name, timeout=15))
    await asyncio.sleep(0.5)
    assert not waiting.done(), "the pop waits while the queue is empty"
    await producer.push(name, {"job": 42})
    assert await asyncio.wait_for(waiting, 10) == {"job": 42}
    assert await producer.get_length(name) == 0


async def test_queues_are_shared_by_the_nodes_of_a_cluster(request, is_external):
    """Two nodes on one Redis: a task pushed on one pops on the other, also while that
    pop is already waiting."""
    if is_external:
        pytest.skip("starts rhizo nodes of its own")
    from conftest import TEST_JWT_SECRET, _start_rhizo, _stop_rhizo
    from test_cluster import _ensure_redis

    _ensure_redis()
    prefix = f"rhizo-compat-queue-{os.getpid()}-{time.monotonic_ns()}"
    nodes = []
    try:
        for sid in ["qa", "qb"]:
            env = {
                "HYPHA_SERVER_ID": sid,
                "HYPHA_REDIS_URI": "redis://127.0.0.1:6379/0",
                "RHIZO_REDIS_PREFIX": prefix,
            }
            nodes.append(_start_rhizo(extra_env=env, args=["--database-uri", "memory"]))
        user = unique_id("quser").lower()
        ws = f"ws-user-{user}"
        token = user_token(user, ws, TEST_JWT_SECRET)
        a = await connect_to_server({"server_url": nodes[0][0].url, "token": token, "workspace": ws})
        b = await connect_to_server({"server_url": nodes[1][0].url, "token": token, "workspace": ws})
        try:
            qa, qb = await _queue(a), await _queue(b)
            await qa.push("x", {"n": 1})
            assert await qb.get_length("x") == 1
            assert await qb.pop("x", timeout=0) == {"n": 1}
            waiting = asyncio.ensure_future(qb.pop("x", timeout=15))
            await asyncio.sleep(0.5)
            await qa.push("x", {"n": 2})
            assert await asyncio.wait_for(waiting, 10) == {"n": 2}
        finally:
            await asyncio.gather(a.disconnect(), b.disconnect(), return_exceptions=True)
    finally:
        for server, stop, workdir in nodes:
            _stop_rhizo(request, server, stop, workdir)
