"""Fixtures for the hypha-rpc compatibility suite.

Server under test:
* ``HYPHA_SERVER_URL`` set  -> use that (already running) server, e.g. the reference
  Python server started with ``bash /work/shared/peer/start-reference.sh 19527``.
  Tests marked ``rhizo_only`` are skipped in that case (unless COMPAT_FORCE_RHIZO_ONLY=1).
* otherwise -> start the rhizo binary (``RHIZO_BIN``, default ``<repo>/target/debug/rhizo``)
  as ``<bin> serve --host 127.0.0.1 --port <free port>`` with a fixed ``HYPHA_JWT_SECRET``,
  in a temporary working directory, and kill it at the end of the session.

Every async test gets a hard time limit (default 30 s, ``@pytest.mark.timeout_s(n)`` to
change it) so that a hang fails the test instead of blocking the run.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest
from hypha_rpc import connect_to_server

from compat_helpers import unique_id

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TEST_TIMEOUT = 30.0
READINESS_TIMEOUT = 20.0
TEST_JWT_SECRET = "rhizo-compat-test-secret-0123456789abcdef"
# The root token of the rhizo server the suite starts (``root_token`` fixture).
ROOT_TOKEN = "rz-compat-Qm9vdFRva2VuRm9yVGVzdHNPbmx5-7f3a9c1e5b"
EXTERNAL_URL = os.environ.get("HYPHA_SERVER_URL", "").strip().rstrip("/")
# COMPAT_FORCE_RHIZO_ONLY=1 runs rhizo_only tests against an external server too (used to
# confirm that they do catch the reference's flaws).
FORCE_RHIZO_ONLY = os.environ.get("COMPAT_FORCE_RHIZO_ONLY") == "1"


# --------------------------------------------------------------------------- hooks


def _with_timeout(fn, seconds: float, nodeid: str):
    @functools.wraps(fn)
    async def wrapper(*args, **kwargs):
        # asyncio.wait (not wait_for) so that a TimeoutError raised *inside* the test,
        # e.g. a hypha-rpc "Method call timed out", is reported as itself.
        task = asyncio.ensure_future(fn(*args, **kwargs))
        done, _ = await asyncio.wait({task}, timeout=seconds)
        if not done:
            task.cancel()  # runs the test's finally blocks
            await asyncio.wait({task}, timeout=10)
            raise AssertionError(
                f"{nodeid}: hard test timeout of {seconds:.0f}s exceeded (the server hung?)"
            )
        return task.result()

    return wrapper


def pytest_collection_modifyitems(config, items):
    skip_rhizo_only = pytest.mark.skip(
        reason="rhizo_only: the reference server has the flaw this test guards against"
    )
    for item in items:
        if EXTERNAL_URL and not FORCE_RHIZO_ONLY and item.get_closest_marker("rhizo_only"):
            item.add_marker(skip_rhizo_only)
        fn = getattr(item, "obj", None)
        if fn is not None and inspect.iscoroutinefunction(fn):
            marker = item.get_closest_marker("timeout_s")
            seconds = float(marker.args[0]) if marker else DEFAULT_TEST_TIMEOUT
            item.obj = _with_timeout(fn, seconds, item.nodeid)


# --------------------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 60) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"<could not read {path}: {exc}>"
    return "\n".join(lines[-n:])


class _Server:
    def __init__(self, url: str, process: subprocess.Popen | None, log_path: Path | None):
        self.url = url
        self.process = process
        self.log_path = log_path


def _terminate(process: subprocess.Popen) -> None:
    """Stops ``process``: SIGTERM, then SIGKILL after 5 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _wait_ready(process: subprocess.Popen, ready) -> bool:
    """Polls ``ready()`` (``False`` or an ``httpx.HTTPError`` mean not yet) every 0.1 s
    until it holds, ``process`` exits, or ``READINESS_TIMEOUT`` passes."""
    deadline = time.monotonic() + READINESS_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if ready():
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def _binary_path() -> Path:
    """The rhizo binary the suite runs (``RHIZO_BIN``, else ``target/debug/rhizo``)."""
    return Path(os.environ.get("RHIZO_BIN") or REPO / "target" / "debug" / "rhizo")


def _start_rhizo(
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
    workdir: Path | None = None,
    args: list[str] | None = None,
):
    """Starts the rhizo binary (on ``port`` in ``workdir``, by default a free port and a new
    temporary directory, with extra CLI ``args`` appended); returns ``(server, stop, workdir)``."""
    binary = _binary_path()
    if not binary.exists():
        raise RuntimeError(
            f"rhizo binary not found at {binary}; build it (cargo build) or set RHIZO_BIN, "
            "or set HYPHA_SERVER_URL to test an already running server"
        )
    port = port or _free_port()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="rhizo-compat-"))
    log_path = workdir / f"server-{port}-{time.monotonic_ns()}.log"
    env = dict(os.environ)
    env["HYPHA_JWT_SECRET"] = TEST_JWT_SECRET
    env["HYPHA_ROOT_TOKEN"] = ROOT_TOKEN
    # The built-in python-eval worker runs app scripts with this interpreter (it has hypha-rpc).
    env.setdefault("RHIZO_PYTHON_EVAL_PYTHON", sys.executable)
    env.setdefault("RUST_BACKTRACE", "1")
    env.update(extra_env or {})
    log_file = open(log_path, "wb")
    process = subprocess.Popen(
        [str(binary), "serve", "--host", "127.0.0.1", "--port", str(port), *(args or [])],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def _stop():
        _terminate(process)
        log_file.close()

    ready = _wait_ready(
        process, lambda: httpx.get(f"{url}/health/readiness", timeout=1.0).status_code == 200
    )
    if not ready:
        code = process.poll()
        _stop()
        tail = _tail(log_path)
        print(f"\n--- rhizo server log tail ({log_path}) ---\n{tail}\n---", file=sys.stderr)
        why = (
            f"exited with code {code} before becoming ready"
            if code is not None
            else f"did not answer /health/readiness with 200 within {READINESS_TIMEOUT:.0f}s"
        )
        raise RuntimeError(f"rhizo server at {url} {why}; log tail:\n{tail}")
    return _Server(url, process, log_path), _stop, workdir


def _stop_rhizo(request, server: _Server, stop, workdir: Path):
    process, log_path = server.process, server.log_path
    crashed = process.poll()
    stop()
    if crashed is not None:
        print(
            f"\n--- rhizo server exited early with code {crashed}; log tail ({log_path}) ---\n"
            f"{_tail(log_path)}\n---",
            file=sys.stderr,
        )
    elif request.session.testsfailed == 0 and not os.environ.get("COMPAT_KEEP_SERVER_DIR"):
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"\nrhizo server log kept at {log_path}", file=sys.stderr)


@pytest.fixture(scope="session")
def _server(request):
    if EXTERNAL_URL:
        yield _Server(EXTERNAL_URL, None, None)
        return
    server, stop, workdir = _start_rhizo()
    yield server
    _stop_rhizo(request, server, stop, workdir)


# Small quotas and an unload grace period, for the tests of those settings.
LIMITED_ENV = {
    "HYPHA_MAX_SERVICES_PER_CLIENT": "3",
    "HYPHA_MAX_WORKSPACES_PER_USER": "2",
    "HYPHA_MAX_CONNECTIONS_PER_USER": "3",
    "HYPHA_MAX_CLIENTS_PER_WORKSPACE": "4",
    "HYPHA_WORKSPACE_UNLOAD_GRACE_PERIOD": "2",
}


@pytest.fixture(scope="session")
def limited_server_url(request, is_external):
    """A second rhizo server started with ``LIMITED_ENV`` (rhizo only)."""
    if is_external:
        pytest.skip("needs a server started with small quotas")
    server, stop, workdir = _start_rhizo(LIMITED_ENV)
    yield server.url
    _stop_rhizo(request, server, stop, workdir)


@pytest.fixture(scope="session")
def server_url(_server) -> str:
    """Base URL of the server under test, e.g. ``http://127.0.0.1:40123``."""
    return _server.url


@pytest.fixture(scope="session")
def server_process(_server):
    """The rhizo subprocess (``subprocess.Popen``) or ``None`` for an external server."""
    return _server.process


@pytest.fixture(scope="session")
def is_external(_server) -> bool:
    return _server.process is None


# --------------------------------------------------------------------------- clients


@pytest.fixture
async def connect(server_url):
    """Factory: ``client = await connect(client_id=..., workspace=..., token=...)``.

    Every client made through it is disconnected when the test ends (even on failure).
    """
    clients = []

    async def _connect(**config):
        cfg = {"server_url": server_url}
        cfg.update(config)
        client = await asyncio.wait_for(connect_to_server(cfg), 20)
        clients.append(client)
        return client

    _connect.clients = clients
    yield _connect

    async def _close(client):
        try:
            await asyncio.wait_for(client.disconnect(), 10)
        except BaseException:  # noqa: BLE001 - teardown must not mask the test result
            pass

    await asyncio.gather(*(_close(c) for c in reversed(clients)), return_exceptions=True)


@pytest.fixture
async def client(connect):
    """One anonymous client (own fresh workspace)."""
    return await connect()


@pytest.fixture
async def workspace_pair(connect):
    """(owner, member): member joined owner's workspace with a read_write token."""
    owner = await connect(client_id=unique_id("owner"))
    token = await owner.generate_token({"permission": "read_write"})
    member = await connect(
        client_id=unique_id("member"), workspace=owner.config.workspace, token=token
    )
    return owner, member


@pytest.fixture
def root_token(is_external) -> str:
    """The root token of the server under test (rhizo only; skipped for external servers)."""
    if is_external:
        pytest.skip("the root token of an external server is unknown")
    return ROOT_TOKEN


# --------------------------------------------------------------------------- artifacts


def _start_moto(request):
    """Starts a moto S3 server on a free loopback port; returns ``(endpoint_url, stop)``.

    The binary comes from ``RHIZO_MOTO_SERVER`` or ``<repo>/.venv/bin/moto_server``; when it is
    missing the test is skipped (failed when ``CI`` is set)."""
    binary = Path(os.environ.get("RHIZO_MOTO_SERVER") or REPO / ".venv" / "bin" / "moto_server")
    if not binary.exists():
        msg = f"moto_server not found at {binary} (set RHIZO_MOTO_SERVER)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    port = _free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="rhizo-moto-"))
    log_file = open(log_dir / "moto.log", "wb")
    env = dict(os.environ, AWS_DEFAULT_REGION="us-east-1")
    process = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        cwd=log_dir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def _stop():
        _terminate(process)
        log_file.close()
        shutil.rmtree(log_dir, ignore_errors=True)

    if _wait_ready(process, lambda: httpx.get(url, timeout=1.0) is not None):
        return url, _stop
    tail = _tail(log_dir / "moto.log")
    _stop()
    raise RuntimeError(f"moto_server at {url} did not start; log tail:\n{tail}")


PG_SERVER = "postgres://postgres@127.0.0.1:5432"


def _postgres_database(request):
    """A fresh PostgreSQL database on 127.0.0.1:5432 (trust auth); returns ``(uri, drop)``.
    Without a server the test is skipped (failed when ``CI`` is set)."""
    name = f"rhizo_compat_{uuid.uuid4().hex[:12]}"
    psql = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qAtc"]
    try:
        subprocess.run([*psql, f"CREATE DATABASE {name}"], check=True, capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        msg = f"PostgreSQL on 127.0.0.1:5432 is not usable ({exc})"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)

    def _drop():
        subprocess.run([*psql, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], capture_output=True, timeout=20)

    return f"{PG_SERVER}/{name}", _drop


@pytest.fixture(scope="session", params=["local", "s3", "postgres"])
def artifact_server(request):
    """Base URL of a server with the artifact manager, once per storage backend.

    * ``HYPHA_SERVER_URL`` set: that server for "local" (it has whatever storage it was
      started with; the reference needs ``--enable-s3 ...``), "s3" is skipped.
    * otherwise "local" starts a default rhizo (artifact files under its data directory) and
      "s3" starts moto_server plus a rhizo pointed at it with ``--enable-s3 ...``;
      "postgres" keeps the rows in a fresh PostgreSQL database (``--database-uri``) and
      the files under the data directory.
    """
    if EXTERNAL_URL:
        if request.param != "local":
            pytest.skip("an external server has the storage it was started with")
        yield EXTERNAL_URL
        return
    if request.param == "local":
        server, stop, workdir = _start_rhizo()
        yield server.url
        _stop_rhizo(request, server, stop, workdir)
        return
    if request.param == "postgres":
        uri, drop = _postgres_database(request)
        try:
            server, stop, workdir = _start_rhizo(args=["--database-uri", uri])
        except BaseException:
            drop()
            raise
        yield server.url
        _stop_rhizo(request, server, stop, workdir)
        drop()
        return
    s3_url, stop_moto = _start_moto(request)
    try:
        server, stop, workdir = _start_rhizo(
            args=[
                "--enable-s3",
                "--endpoint-url", s3_url,
                "--access-key-id", "test",
                "--secret-access-key", "test",
                "--region-name", "us-east-1",
                "--workspace-bucket", "rhizo-test",
            ]
        )
    except BaseException:
        stop_moto()
        raise
    yield server.url
    _stop_rhizo(request, server, stop, workdir)
    stop_moto()


@pytest.fixture
async def artifact_user(artifact_server):
    """Factory: ``u = await artifact_user()`` -> a logged-in (non-anonymous) user connected to
    ``artifact_server`` in its own persistent workspace ``ws-user-<id>``:
    ``u.api`` (the hypha-rpc client), ``u.am`` (``public/artifact-manager``), ``u.ws``,
    ``u.user_id``, ``u.token`` (also usable as ``Authorization: Bearer``) and ``u.url``.
    ``await artifact_user.anonymous()`` -> an anonymous hypha-rpc client of the same server.

    Artifacts need a persistent workspace (artifacts.md §2.5), which anonymous users do not
    have. The user's token is a JWT signed with ``TEST_JWT_SECRET``, as an identity provider
    sharing the server's secret would sign it; rhizo is started with that secret, and an
    external server must be too (the reference: ``HYPHA_JWT_SECRET=<TEST_JWT_SECRET>
    start-reference.sh ...``). Every client is disconnected when the test ends.
    """
    from artifact_helpers import ArtifactUser, user_token

    clients = []

    async def _client(**config):
        client = await asyncio.wait_for(connect_to_server({"server_url": artifact_server, **config}), 20)
        clients.append(client)
        return client

    async def _make(prefix: str = "artuser") -> "ArtifactUser":
        user_id = unique_id(prefix).lower().replace("_", "-")
        ws = f"ws-user-{user_id}"
        token = user_token(user_id, ws, TEST_JWT_SECRET)
        api = await _client(client_id=unique_id("artc"), workspace=ws, token=token)
        am = await api.get_service("public/artifact-manager")
        return ArtifactUser(url=artifact_server, api=api, am=am, ws=ws, user_id=user_id, token=token)

    async def _anonymous():
        return await _client(client_id=unique_id("anon"))

    _make.anonymous = _anonymous
    yield _make

    async def _close(client):
        try:
            await asyncio.wait_for(client.disconnect(), 10)
        except BaseException:  # noqa: BLE001 - teardown must not mask the test result
            pass

    await asyncio.gather(*(_close(c) for c in reversed(clients)), return_exceptions=True)


@pytest.fixture
async def apps_user(server_url):
    """Factory: ``u = await apps_user()`` → an :class:`AppsUser`; ``await apps_user.client(u)``
    → one more connection of the same user in its workspace. Everything is disconnected at
    the end."""
    clients = []

    async def _connect(**config):
        c = await asyncio.wait_for(connect_to_server({"server_url": server_url, **config}), 20)
        clients.append(c)
        return c

    from apps_helpers import AppsUser
    from artifact_helpers import user_token

    async def _make(prefix: str = "appuser") -> "AppsUser":
        user_id = unique_id(prefix).lower()
        ws = f"ws-user-{user_id}"
        token = user_token(user_id, ws, TEST_JWT_SECRET)
        api = await _connect(client_id=unique_id("appc"), workspace=ws, token=token)
        controller = await api.get_service("public/server-apps")
        return AppsUser(server_url, api, controller, ws, user_id, token)

    async def _client(u: "AppsUser", **extra):
        return await _connect(client_id=unique_id("appw"), workspace=u.ws, token=u.token, **extra)

    _make.client = _client
    yield _make
    for c in reversed(clients):
        try:
            await asyncio.wait_for(c.disconnect(), 10)
        except BaseException:  # noqa: BLE001 - teardown must not mask the result
            pass
