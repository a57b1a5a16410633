"""The command line of rhizo: `--startup-functions` (workspace-api.md §9.4, §10.1),
`rhizo token` (a token signed with the server's secret) and the groups of
`rhizo serve --help`. Each test starts its own rhizo binary (``RHIZO_BIN``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from hypha_rpc import connect_to_server

from compat_helpers import unique_id
from conftest import ROOT_TOKEN, _binary_path, _free_port, _start_rhizo, _tail, _terminate

pytestmark = pytest.mark.rhizo_only

# Quicker servers: the startup functions need no built-in workers.
FAST = ["--disable-builtin-workers", "--database-uri", "memory"]

HELLO = """
async def register_hello(server):
    await server.register_service(
        {
            "id": "startup-hello",
            "name": "Hello from a startup function",
            "config": {"visibility": "public"},
            "hello": lambda name: f"hello {name} from {server.config.workspace}",
        }
    )
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def _rhizo(*args: str, cwd: Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [str(_binary_path()), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


# --------------------------------------------------------------------------- startup functions


async def test_startup_function_services_stay_available(tmp_path):
    """A file's function and a module's function (both forms, space-separated in
    HYPHA_STARTUP_FUNCTIONS) run once the server is up; the service the first registered
    in `public` can be called by any client afterwards."""
    hello = _write(tmp_path / "hello_startup.py", HELLO)
    # A module name resolves against the server's working directory; a plain function
    # (not a coroutine) is called.
    _write(
        tmp_path / "plain_startup_mod.py",
        """
        def announce(server):
            print("plain startup function ran in", server.config.workspace)
        """,
    )
    server, stop, _ = _start_rhizo(
        extra_env={"HYPHA_STARTUP_FUNCTIONS": f"{hello}:register_hello plain_startup_mod:announce"},
        workdir=tmp_path,
        args=FAST,
    )
    try:
        api = await connect_to_server({"server_url": server.url})
        try:
            svc = await api.get_service("public/startup-hello")
            assert await svc.hello("ada") == "hello ada from public"
            # Still there a moment later: the runner keeps its connection.
            await asyncio.sleep(1)
            svc = await api.get_service("public/startup-hello")
            assert await svc.hello("bob") == "hello bob from public"
        finally:
            await api.disconnect()
        log = server.log_path.read_text(errors="replace")
        assert "plain startup function ran in public" in log
    finally:
        stop()


async def test_readiness_waits_for_the_startup_functions(tmp_path):
    """While a startup function runs, /health/readiness answers 503; 200 once it returned."""
    gate = tmp_path / "go"
    _write(
        tmp_path / "slow_startup.py",
        f"""
        import asyncio, os

        async def wait_for_gate(server):
            while not os.path.exists({str(gate)!r}):
                await asyncio.sleep(0.05)
        """,
    )
    port = _free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                str(_binary_path()),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--startup-functions",
                "slow_startup.py:wait_for_gate",
                *FAST,
            ],
            cwd=tmp_path,
            env={**os.environ, "RHIZO_PYTHON_EVAL_PYTHON": sys.executable},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/health/readiness"

    def status_until(wanted: int) -> httpx.Response:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert process.poll() is None, _tail(log)
            try:
                r = httpx.get(url, timeout=1.0)
                if r.status_code == wanted:
                    return r
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"readiness never answered {wanted}; log:\n{_tail(log)}")

    try:
        r = status_until(503)
        assert "startup functions" in r.text
        gate.write_text("go")
        status_until(200)
    finally:
        _terminate(process)
    assert process.returncode == 0, _tail(log)


async def test_failing_startup_function_stops_the_server(tmp_path):
    _write(
        tmp_path / "broken_startup.py",
        """
        async def explode(server):
            raise RuntimeError("boom-from-startup")
        """,
    )
    with pytest.raises(RuntimeError) as err:
        _start_rhizo(workdir=tmp_path, args=["--startup-functions", "broken_startup.py:explode", *FAST])
    text = str(err.value)
    assert "exited with code" in text and "exited with code 0" not in text, text
    assert "boom-from-startup" in text, text  # the traceback is in the server's output
    assert "broken_startup.py:explode" in text, text


async def test_missing_startup_function_stops_the_server(tmp_path):
    _write(tmp_path / "empty_startup.py", "x = 1\n")
    with pytest.raises(RuntimeError) as err:
        _start_rhizo(workdir=tmp_path, args=["--startup-functions", "empty_startup.py:nope", *FAST])
    assert "nope" in str(err.value), str(err.value)


def test_malformed_startup_function_is_a_usage_error(tmp_path):
    r = _rhizo("serve", "--port", "0", "--startup-functions", "no-function-here", cwd=tmp_path)
    assert r.returncode == 64, r
    assert "--startup-functions" in r.stderr


# --------------------------------------------------------------------------- rhizo token

SECRET = "rhizo-token-cli-test-secret-4b1d0c9e"


def _mint(tmp_path: Path, *args: str, secret: str = SECRET) -> str:
    r = _rhizo("token", "--jwt-secret", secret, *args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert r.stdout == token + "\n" and token.count(".") == 2, r.stdout  # the token alone
    return token


async def test_token_is_accepted_by_a_server_with_the_same_secret(tmp_path):
    ws = unique_id("ws-cli")
    rw = _mint(tmp_path, "--workspace", ws, "--permission", "rw", "--expires-in", "600")
    read = _mint(tmp_path, "--workspace", ws, "--permission", "r", "--user-id", "cli-reader")
    other = _mint(tmp_path, "--workspace", ws, secret="a-different-secret-7777777777")
    server, stop, _ = _start_rhizo(args=["--jwt-secret", SECRET, *FAST])
    try:
        # Workspaces other than a user's own must exist before anyone connects to them.
        root = await connect_to_server({"server_url": server.url, "token": ROOT_TOKEN})
        try:
            await root.create_workspace({"id": ws, "persistent": False})
            api = await connect_to_server({"server_url": server.url, "workspace": ws, "token": rw})
        finally:
            await root.disconnect()
        try:
            assert api.config.workspace == ws
            assert api.config.user["id"] == "rhizo-cli"
            await api.register_service({"id": "cli-svc", "ping": lambda: "pong"})
            ids = [s["id"] for s in await api.list_services()]
            assert any(i.endswith(":cli-svc") for i in ids), ids
            reader = await connect_to_server(
                {"server_url": server.url, "workspace": ws, "token": read}
            )
            try:
                assert reader.config.user["id"] == "cli-reader"
                svc = await reader.get_service("cli-svc")
                assert await svc.ping() == "pong"
                with pytest.raises(Exception, match="(?i)permission"):
                    await reader.register_service({"id": "not-allowed", "f": lambda: 1})
            finally:
                await reader.disconnect()
        finally:
            await api.disconnect()
        with pytest.raises(Exception):
            await connect_to_server({"server_url": server.url, "workspace": ws, "token": other})
    finally:
        stop()


async def test_admin_token_for_a_personal_workspace(tmp_path):
    """A user's own workspace is created on connect, as for any token of the server."""
    user = unique_id("cli-user")
    token = _mint(tmp_path, "--workspace", f"ws-user-{user}", "--permission", "a", "--user-id", user)
    server, stop, _ = _start_rhizo(args=["--jwt-secret", SECRET, *FAST])
    try:
        api = await connect_to_server(
            {"server_url": server.url, "workspace": f"ws-user-{user}", "token": token}
        )
        try:
            assert api.config.workspace == f"ws-user-{user}"
            # Admin: it may mint tokens for its workspace.
            assert isinstance(await api.generate_token({"permission": "read"}), str)
        finally:
            await api.disconnect()
    finally:
        stop()


def test_token_secret_comes_from_the_data_dir_as_for_serve(tmp_path):
    """Without --jwt-secret both commands use `<data-dir>/jwt-secret`: two mints agree on
    the secret (the file is created once)."""
    env = {"HYPHA_JWT_SECRET": "", "JWT_SECRET": ""}
    r = _rhizo("token", "--workspace", "w1", "--data-dir", "d", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    secret = (tmp_path / "d" / "jwt-secret").read_text()
    assert len(secret) >= 32
    r2 = _rhizo("token", "--workspace", "w1", "--data-dir", "d", cwd=tmp_path, env=env)
    assert r2.returncode == 0 and (tmp_path / "d" / "jwt-secret").read_text() == secret


def test_token_rejects_a_wrong_permission(tmp_path):
    r = _rhizo("token", "--workspace", "w1", "--permission", "x", "--jwt-secret", SECRET, cwd=tmp_path)
    assert r.returncode != 0
    assert r.stdout == ""
    assert "--permission" in r.stderr and "r (read), rw (read-write) or a (admin)" in r.stderr
    r = _rhizo("token", "--workspace", "a b", "--jwt-secret", SECRET, cwd=tmp_path)
    assert r.returncode != 0 and r.stdout == "" and "--workspace" in r.stderr
    r = _rhizo("token", "--workspace", "w1", "--expires-in", "0", "--jwt-secret", SECRET, cwd=tmp_path)
    assert r.returncode != 0 and r.stdout == "" and "--expires-in" in r.stderr


# --------------------------------------------------------------------------- --help


def test_serve_help_groups_the_flags(tmp_path):
    r = _rhizo("serve", "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    headings = [
        "Network:",
        "Auth:",
        "Storage:",
        "Cluster (Redis):",
        "S3:",
        "Server apps & workers:",
        "Features:",
        "Limits:",
    ]
    for h in headings:
        assert f"\n{h}\n" in out, (h, out)
    # Each flag under its group.
    def section(h: str) -> str:
        start = out.index(f"\n{h}\n")
        rest = out[start + len(h) + 2 :]
        ends = [rest.index(f"\n{x}\n") for x in headings if f"\n{x}\n" in rest]
        return rest[: min(ends)] if ends else rest

    assert "--port" in section("Network:")
    assert "--jwt-secret" in section("Auth:")
    assert "--redis-uri" in section("Cluster (Redis):")
    assert "--endpoint-url" in section("S3:")
    assert "--python-eval-python" in section("Server apps & workers:")
    assert "--startup-functions" in section("Features:")
    assert "--max-services-per-client" in section("Limits:")
