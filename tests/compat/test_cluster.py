"""Three rhizo nodes behind one Redis and one TCP balancer, driven by the real hypha-rpc
client (issue: horizontal scale). Every client connects through the balancer, as users
deploy it (``--public-base-url`` is the balancer's address, so hypha-rpc treats every
node's functions as its own server's); the balancer can be told which node the next
connection goes to, so a test places its clients on chosen nodes.

Needs Redis on 127.0.0.1:6379 (started here if it is down). Each run uses its own
``--redis-prefix``, so nothing else on that Redis is touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from compat_helpers import EventLog, eventually, expect_error, unique_id
from conftest import _free_port, _start_rhizo

pytestmark = pytest.mark.timeout_s(60)


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _ensure_redis():
    if _redis_up():
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("Redis is needed on 127.0.0.1:6379 and redis-server is not installed")
    subprocess.run([server, "--daemonize", "yes", "--port", "6379", "--save", ""], check=True)
    deadline = time.monotonic() + 10
    while not _redis_up():
        if time.monotonic() > deadline:
            pytest.fail("redis-server did not come up on 127.0.0.1:6379")
        time.sleep(0.1)


class Balancer:
    """A TCP balancer on 127.0.0.1 in its own thread: each accepted connection is piped to
    one node, round robin over the nodes that accept a connection, or to the node
    ``pin()`` named for the next connection. ``placements`` records where each went."""

    def __init__(self, backends: list[int]):
        self.backends = backends
        self.port = _free_port()
        self.placements: list[int] = []
        self._pinned: int | None = None
        self._next = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def pin(self, node: int):
        with self._lock:
            self._pinned = node

    def _order(self) -> list[int]:
        with self._lock:
            if self._pinned is not None:
                first, self._pinned = self._pinned, None
            else:
                first = self._next % len(self.backends)
                self._next += 1
        return [first] + [i for i in range(len(self.backends)) if i != first]

    def _run(self):
        asyncio.set_event_loop(self._loop)

        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def handle(client_r, client_w):
            for i in self._order():
                try:
                    node_r, node_w = await asyncio.open_connection("127.0.0.1", self.backends[i])
                except OSError:
                    continue
                self.placements.append(i)
                await asyncio.gather(pipe(client_r, node_w), pipe(node_r, client_w))
                return
            client_w.close()

        async def main():
            self._server = await asyncio.start_server(handle, "127.0.0.1", self.port)
            self._ready.set()
            async with self._server:
                await self._server.serve_forever()

        try:
            self._loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass

    def close(self):
        self._loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(self._loop)])
        self._thread.join(5)


class Cluster:
    def __init__(self):
        _ensure_redis()
        self.prefix = f"rhizo-compat-{os.getpid()}-{time.monotonic_ns()}"
        self.dir = Path(tempfile.mkdtemp(prefix="rhizo-cluster-"))
        self.ports = [_free_port() for _ in range(3)]
        self.balancer = Balancer(self.ports)
        self.url = f"http://127.0.0.1:{self.balancer.port}"
        self.nodes: list = [None, None, None]
        for i in range(3):
            self.start(i)

    def env(self, i: int) -> dict[str, str]:
        return {
            "HYPHA_SERVER_ID": "abc"[i],
            "HYPHA_REDIS_URI": "redis://127.0.0.1:6379/0",
            "RHIZO_REDIS_PREFIX": self.prefix,
            "HYPHA_PUBLIC_BASE_URL": self.url,
            "HYPHA_DATABASE_URI": f"sqlite://{self.dir / 'shared.db'}",
            # Artifact files (and so server apps' files) in one directory, as a shared
            # volume or S3 would hold them.
            "RHIZO_DATA_DIR": str(self.dir / "data"),
        }

    def start(self, i: int):
        workdir = self.dir / f"node-{i}"
        workdir.mkdir(exist_ok=True)
        server, stop, _ = _start_rhizo(extra_env=self.env(i), port=self.ports[i], workdir=workdir)
        self.nodes[i] = (server, stop)

    def kill(self, i: int):
        """kill -9: no goodbye to the cluster."""
        server, _ = self.nodes[i]
        server.process.kill()
        server.process.wait(10)

    def stop(self, i: int):
        """SIGTERM: a graceful shutdown."""
        _, stop = self.nodes[i]
        stop()

    def close(self):
        for i, node in enumerate(self.nodes):
            if node is not None and node[0].process.poll() is None:
                node[1]()
        self.balancer.close()
        if os.environ.get("COMPAT_KEEP_SERVER_DIR"):
            print(f"cluster logs kept in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(is_external):
    if is_external:
        pytest.skip("starts rhizo nodes of its own")
    c = Cluster()
    yield c
    c.close()


@pytest.fixture
async def on_node(cluster):
    """``client = await on_node(i, **config)``: a hypha-rpc client connected through the
    balancer to node ``i``; disconnected when the test ends."""
    from hypha_rpc import connect_to_server

    clients = []

    async def _connect(i: int, **config):
        cluster.balancer.pin(i)
        before = len(cluster.balancer.placements)
        client = await asyncio.wait_for(connect_to_server({"server_url": cluster.url, **config}), 20)
        assert cluster.balancer.placements[before] == i, "the balancer placed the client elsewhere"
        clients.append(client)
        return client

    yield _connect
    for c in reversed(clients):
        try:
            await asyncio.wait_for(c.disconnect(), 10)
        except BaseException:  # noqa: BLE001 - teardown must not mask the result
            pass


async def test_broadcasts_reach_subscribers_on_other_nodes(on_node):
    owner = await on_node(0, client_id=unique_id("owner"))
    token = await owner.generate_token({"permission": "read_write"})
    member = await on_node(1, client_id=unique_id("member"), workspace=owner.config.workspace, token=token)
    assert await member.subscribe(["my-event"]) is True
    got = EventLog().attach(member, "my-event")
    await owner.emit({"type": "my-event", "to": "*", "data": {"n": 1}})
    msg = await got.wait_for("my-event")
    assert msg["data"] == {"n": 1}
    assert msg["from"] == f"{owner.config.workspace}/{owner.config.client_id}"


async def test_services_are_found_and_called_across_nodes(on_node):
    provider = await on_node(0, client_id=unique_id("prov"))
    seen = []

    def add(a, b, context=None):
        seen.append(context["ws"])
        return a + b

    async def count(n):
        for i in range(n):
            yield i

    def apply(f, x):
        return f(x)

    await provider.register_service(
        {
            "id": "calc",
            "config": {"visibility": "public", "require_context": ["add"]},
            "add": add,
            "count": count,
            "apply": apply,
        }
    )
    consumer = await on_node(2)
    sid = f"{provider.config.workspace}/{provider.config.client_id}:calc"
    svc = await eventually(lambda: consumer.get_service(sid))
    assert await svc.add(2, 3) == 5
    assert seen == [consumer.config.workspace], "the provider saw the caller's workspace"
    assert [i async for i in await svc.count(4)] == [0, 1, 2, 3]
    # A callback from the consumer's node into the provider's and back.
    assert await svc.apply(lambda x: x * 10, 4) == 40
    listed = await consumer.list_services({"workspace": provider.config.workspace})
    assert any(s["id"].endswith(":calc") for s in listed), listed
    # Large payloads cross in chunks (message_cache) both ways.
    blob = os.urandom(3 * 1024 * 1024)
    echo = lambda b: b  # noqa: E731
    await provider.register_service({"id": "echo", "config": {"visibility": "public"}, "echo": echo})
    esvc = await eventually(
        lambda: consumer.get_service(f"{provider.config.workspace}/{provider.config.client_id}:echo")
    )
    assert await esvc.echo(blob) == blob


async def test_client_events_reach_other_nodes_and_departures_fail_calls(on_node):
    owner = await on_node(0, client_id=unique_id("owner"))
    token = await owner.generate_token({"permission": "read_write"})
    member = await on_node(1, client_id=unique_id("member"), workspace=owner.config.workspace, token=token)
    await member.register_service({"id": "m", "ok": lambda: "ok"})
    proxy = await eventually(lambda: owner.get_service(f"{member.config.client_id}:m"))
    assert await proxy.ok() == "ok"
    events = EventLog().attach(owner, "client_disconnected")
    await member.disconnect()
    await events.wait_for("client_disconnected", lambda m: m["data"]["id"] == member.config.client_id, timeout=10)
    t0 = time.monotonic()
    exc = await expect_error(proxy.ok(), timeout=10)
    assert not isinstance(exc, TimeoutError), repr(exc)
    assert time.monotonic() - t0 < 10


@pytest.mark.timeout_s(90)
async def test_a_killed_nodes_clients_reconnect_elsewhere_and_carry_on(cluster, on_node):
    provider = await on_node(1, client_id=unique_id("sticky"))
    await provider.register_service({"id": "sticky", "config": {"visibility": "public"}, "f": lambda: "still here"})
    caller = await on_node(0)
    sid = f"{provider.config.workspace}/{provider.config.client_id}:sticky"
    svc = await eventually(lambda: caller.get_service(sid))
    assert await svc.f() == "still here"
    cluster.kill(1)
    try:
        # The provider reconnects through the balancer to a live node with its
        # reconnection token and registers its service again; the caller finds it.
        async def back():
            s = await caller.get_service(sid)
            return await s.f()

        assert await eventually(back, timeout=45, attempt_timeout=5) == "still here"
    finally:
        cluster.start(1)


def _redis_cli(*args: str):
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", *args], check=False, capture_output=True, timeout=10)


@pytest.mark.timeout_s(90)
async def test_cut_redis_connections_heal_and_local_calls_carry_on(on_node):
    owner = await on_node(0, client_id=unique_id("owner"))
    token = await owner.generate_token({"permission": "read_write"})
    local = await on_node(0, client_id=unique_id("local"), workspace=owner.config.workspace, token=token)
    remote = await on_node(2, client_id=unique_id("remote"), workspace=owner.config.workspace, token=token)
    await local.register_service({"id": "here", "f": lambda: "local"})
    await remote.register_service({"id": "there", "f": lambda: "remote"})
    here = await eventually(lambda: owner.get_service(f"{local.config.client_id}:here"))
    there = await eventually(lambda: owner.get_service(f"{remote.config.client_id}:there"))
    assert await there.f() == "remote"
    # Every node loses its Redis connections at once (subscriber and publisher).
    _redis_cli("CLIENT", "KILL", "TYPE", "pubsub")
    _redis_cli("CLIENT", "KILL", "TYPE", "normal")
    assert await here.f() == "local", "calls within one node do not need Redis"
    # The nodes reconnect and rebuild their directory entries; cross-node calls work again.
    assert await eventually(lambda: there.f(), timeout=30) == "remote"


async def _rolling_restart(cluster, on_node, restarts: list[int]) -> tuple[dict, list[str]]:
    """A caller on node 0 keeps calling a provider on node 2 (``get_service`` then the
    call, each bounded by 10 s) while the nodes in ``restarts`` are stopped (SIGTERM) and
    started again one after another. Returns the outcomes and a timeline (printed with
    ``-s``): a call that ran into its 10 s bound is one lost silently."""
    provider = await on_node(2, client_id=unique_id("steady"))
    await provider.register_service({"id": "steady", "config": {"visibility": "public"}, "f": lambda x: x})
    caller = await on_node(0)
    sid = f"{provider.config.workspace}/{provider.config.client_id}:steady"
    await eventually(lambda: caller.get_service(sid))
    outcomes = {"ok": 0, "error": 0, "hung": 0}
    timeline: list[str] = []
    t0 = time.monotonic()
    done = asyncio.Event()

    def note(what: str):
        timeline.append(f"{time.monotonic() - t0:6.2f}s {what}")

    async def keep_calling():
        i = 0
        while not done.is_set():
            i += 1
            step = "get_service"
            try:
                svc = await asyncio.wait_for(caller.get_service(sid), 10)
                step = "call"
                assert await asyncio.wait_for(svc.f(i), 10) == i
                outcomes["ok"] += 1
            except asyncio.TimeoutError:
                outcomes["hung"] += 1
                note(f"{step} {i} hung (started {time.monotonic() - t0 - 10:.2f}s)")
            except Exception as e:  # noqa: BLE001 - a clear error is an acceptable outcome
                outcomes["error"] += 1
                note(f"{step} {i} failed: {str(e).splitlines()[0][:120]}")
                await asyncio.sleep(0.2)

    task = asyncio.ensure_future(keep_calling())
    try:
        for i in restarts:
            await asyncio.sleep(2)
            note(f"stopping node {i}")
            cluster.stop(i)  # SIGTERM: the node tells the cluster and closes with 1001
            await asyncio.sleep(1)
            cluster.start(i)
            note(f"node {i} started")
        ok_before = outcomes["ok"]
        await asyncio.sleep(4)
        assert outcomes["ok"] > ok_before, f"calls succeed again after the restarts: {outcomes}"
    finally:
        done.set()
        await asyncio.wait_for(task, 25)
    print(f"rolling restart outcomes: {outcomes}")
    print("\n".join(timeline))
    return outcomes, timeline


@pytest.mark.timeout_s(150)
async def test_restarts_of_the_providers_node_and_another_lose_no_call_silently(cluster, on_node):
    """The provider's node and an idle node restarted twice each while the caller (on a
    node that stays up) keeps calling: every call succeeds or fails with a clear error;
    none waits for its timeout."""
    outcomes, timeline = await _rolling_restart(cluster, on_node, [1, 2, 1, 2])
    assert outcomes["hung"] == 0, (outcomes, timeline)


@pytest.mark.timeout_s(150)
@pytest.mark.xfail(
    strict=False,
    reason="hypha-rpc 0.21.47, client side: when the caller's own node restarts, a "
    "get_service it issued while its connection was down can stall inside the client "
    "during its reconnection (traced: the server's reply reaches the client, which then "
    "sends nothing more for that call until the bound); about once per two restarts of "
    "the caller's node. Everything else about this run must hold",
)
async def test_a_rolling_restart_loses_no_call_silently(cluster, on_node):
    """All three nodes restarted twice, the caller's included."""
    outcomes, timeline = await _rolling_restart(cluster, on_node, [0, 1, 2, 0, 1, 2])
    assert outcomes["hung"] == 0, (outcomes, timeline)


@pytest.mark.timeout_s(90)
async def test_calls_in_flight_to_a_dead_node_fail_within_seconds(cluster, on_node):
    """kill -9 of the provider's node: the caller (another workspace, another node) is told
    the provider is gone when the dead node's heartbeat expires, so its pending call fails
    within seconds with a clear error instead of running into its timeout."""
    provider = await on_node(1, client_id=unique_id("doomed"))

    async def slow():
        await asyncio.sleep(120)
        return "never"

    await provider.register_service({"id": "slow", "config": {"visibility": "public"}, "slow": slow})
    caller = await on_node(0)
    svc = await eventually(
        lambda: caller.get_service(f"{provider.config.workspace}/{provider.config.client_id}:slow")
    )
    pending = asyncio.ensure_future(svc.slow())
    await asyncio.sleep(1)
    assert not pending.done()
    cluster.kill(1)
    t0 = time.monotonic()
    try:
        done, _ = await asyncio.wait({pending}, timeout=20)
        assert done, "the call to the dead node's client was still pending after 20 s"
        exc = pending.exception()
        assert exc is not None and not isinstance(exc, TimeoutError), repr(exc)
        assert time.monotonic() - t0 < 20
    finally:
        cluster.start(1)


JS_DIR = Path(__file__).resolve().parents[1] / "compat-js"


@pytest.mark.timeout_s(90)
async def test_the_npm_client_calls_and_is_called_across_nodes(cluster, on_node):
    """The real npm hypha-rpc client on node 2 and the Python one on node 1: each calls the
    other's service, the JavaScript client passes a callback that Python calls back, and
    the Python service sees the JavaScript caller's identity; every frame crosses Redis."""
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "hypha-rpc").is_dir():
        message = "Node.js and `npm ci` in tests/compat-js are needed (tests/run.sh installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    py = await on_node(1, client_id=unique_id("py-cross"))

    async def call_back(f, context=None):
        return await f(7)

    def whoami(text, context=None):
        return {"caller": context["from"], "text": text}

    await py.register_service(
        {
            "id": "py-cross",
            "config": {"visibility": "public", "require_context": True},
            "double": lambda x, context=None: x * 2,
            "call_back": call_back,
            "whoami": whoami,
        }
    )
    env = dict(os.environ)
    env["RHIZO_URL"] = cluster.url
    env["PY_SERVICE"] = f"{py.config.workspace}/{py.config.client_id}:py-cross"
    cluster.balancer.pin(2)
    before = len(cluster.balancer.placements)
    proc = await asyncio.create_subprocess_exec(
        node,
        str(JS_DIR / "cluster.mjs"),
        cwd=JS_DIR,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[str] = []

    async def line_starting(prefix: str) -> str:
        while True:
            raw = await asyncio.wait_for(proc.stdout.readline(), 45)
            if not raw:
                raise AssertionError("the npm client ended early:\n" + "".join(lines))
            text = raw.decode()
            lines.append(text)
            if text.startswith(prefix):
                return text[len(prefix) :].strip()

    try:
        js_id = await line_starting("READY ")
        assert cluster.balancer.placements[before] == 2, "the npm client is on node 2"
        result = json.loads(await line_starting("RESULT "))
        assert result.get("double") == 42, (result, lines)
        assert result.get("callback") == 14, (result, lines)
        caller = js_id.split(":")[0]
        assert result.get("whoami") == {"caller": caller, "text": "hello"}, (result, lines)
        # And Python on node 1 calls the JavaScript service on node 2.
        js = await eventually(lambda: py.get_service(js_id))
        assert await js.triple(5) == 15
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except asyncio.TimeoutError:
            proc.kill()


async def test_http_service_calls_and_asgi_apps_reach_services_on_other_nodes(cluster, on_node):
    """`/{ws}/services/...` and `/{ws}/apps/...` on nodes 0 and 2 reach a provider that is
    connected to node 1 (the HTTP requests go to each node directly, not through the
    balancer)."""
    import httpx

    from test_http_apps import make_app

    prov = await on_node(1, client_id=unique_id("http-prov"))
    await prov.register_service({"id": "calc", "config": {"visibility": "public"}, "add": lambda a, b: a + b})
    app = make_app()

    async def serve(args, context=None):
        await app(args["scope"], args["receive"], args["send"])

    await prov.register_service(
        {"id": "web", "type": "asgi", "serve": serve, "config": {"visibility": "public", "require_context": True}}
    )
    ws = prov.config.workspace
    async with httpx.AsyncClient(timeout=20) as http:
        for i in (0, 2):
            base = f"http://127.0.0.1:{cluster.ports[i]}/{ws}"

            async def add():
                r = await http.get(f"{base}/services/calc/add", params={"a": 1, "b": 2})
                assert r.status_code == 200, r.text
                return r.json()

            assert await eventually(add) == 3, f"node {i}"
            r = await http.get(f"{base}/apps/web/hello", params={"name": "cluster"})
            assert r.status_code == 200, (i, r.text)
            assert r.json() == {"msg": "hello cluster"}
            r = await http.get(f"{base}/apps/web/items/7", params={"q": "y"})
            assert r.status_code == 200 and r.json() == {"item_id": 7, "q": "y"}, (i, r.text)


async def test_server_app_sessions_locks_and_disabled_workers_are_shared_by_every_node(cluster, on_node):
    """Server apps in a cluster (apps-workers.md §0, §7): the session records, disabled
    workers and start/stop locks live in Redis, so any node lists, inspects and stops an
    instance started by another, concurrent lazy starts from two nodes start one instance,
    and only the node holding the app's connection judges its inactivity."""
    from apps_helpers import FunctionWorker, wait_until
    from artifact_helpers import user_token
    from conftest import TEST_JWT_SECRET

    user_id = unique_id("clapps").lower()
    ws = f"ws-user-{user_id}"
    token = user_token(user_id, ws, TEST_JWT_SECRET)
    on = lambda i: on_node(i, workspace=ws, token=token, client_id=unique_id(f"n{i}"))  # noqa: E731
    api0, api1, api2 = await on(0), await on(1), await on(2)
    worker = FunctionWorker(cluster.url, ["echo-app"], connect_app=True)
    await worker.register(api1)
    c0 = await api0.get_service("public/server-apps")
    c2 = await api2.get_service("public/server-apps")
    app = await c0.install(
        manifest={"name": "Cluster Echo", "type": "echo-app", "version": "0.1.0"},
        source="echo",
        overwrite=True,
    )
    app_id = app["id"]
    assert await c2.list_running() == [], "the verification run was stopped everywhere"

    # First calls from two nodes at once start one instance.
    svcs = await asyncio.gather(
        *(api.get_service(f"echo@{app_id}") for api in (api0, api2, api0, api2))
    )
    assert [await s.echo(i) for i, s in enumerate(svcs)] == [0, 1, 2, 3]
    r0, r2 = await c0.list_running(), await c2.list_running()
    assert len(r0) == 1 and [s["id"] for s in r2] == [r0[0]["id"]], (r0, r2)
    sid = r0[0]["id"]
    assert len({await s.whoami() for s in svcs}) == 1
    assert len(worker.configs) == 2, "the verification run and one lazy start"
    info = await c2.get_session_info(sid)
    assert info["app_id"] == app_id and info["daemon"] is False, "types survive the store"
    assert (await c2.get_logs(sid))["log"] == [f"Session {sid} started"]

    # Node 2 stops what node 0 started, on a worker connected to node 1.
    await c2.stop(sid)
    assert sid in worker.stopped
    assert await c0.list_running() == []

    # Inactivity: calls from node 2 keep an instance alive past its limit (nobody else
    # stops it for lack of local traffic); once they end it stops.
    session = await c0.start(app_id, stop_after_inactive=3)
    svc = await api2.get_service(f"{session['id']}:echo")
    for _ in range(10):
        assert await svc.echo(1) == 1
        await asyncio.sleep(0.5)
    assert [s["id"] for s in await c2.list_running()] == [session["id"]]

    async def stopped():
        return session["id"] in worker.stopped and await c0.list_running() == []

    await wait_until(stopped, timeout=20)

    # A worker disabled through one node is disabled for all.
    await c0.edit_worker(worker.service.id, disabled=True)
    listed = {w["id"]: w for w in await c2.list_workers()}
    assert listed[worker.service.id]["disabled"] is True
    err = await expect_error(c2.start(app_id, wait_for_service=False))
    assert "No server app worker found for app type: echo-app" in str(err)
    await c2.edit_worker(worker.service.id, disabled=False)
    again = await c0.start(app_id, wait_for_service=False)
    await c2.stop(again["id"])
