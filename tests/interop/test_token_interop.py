"""Tokens are interchangeable with the reference server when both share HYPHA_JWT_SECRET
(issue: identity and workspaces, item 1).

Not part of `bash tests/run.sh` (it installs and starts the reference server, which takes
minutes on a fresh machine). Run it with:

    RHIZO_INTEROP=1 .venv/bin/python -m pytest tests/interop -q

It starts the reference with ../shared/peer/start-reference.sh and the rhizo binary
(RHIZO_BIN, default target/debug/rhizo) on free loopback ports with one shared secret.
"""

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from hypha_rpc import connect_to_server

REPO = Path(__file__).resolve().parents[2]
PEER = REPO.parent / "shared" / "peer" / "start-reference.sh"
SECRET = "rhizo-interop-secret-0123456789"

pytestmark = pytest.mark.skipif(os.environ.get("RHIZO_INTEROP") != "1", reason="set RHIZO_INTEROP=1 to run")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def servers():
    env = dict(os.environ, HYPHA_JWT_SECRET=SECRET)
    ref_port, rz_port = _free_port(), _free_port()
    ref_pid = subprocess.run(["bash", str(PEER), str(ref_port)], env=env, check=True, capture_output=True, text=True).stdout.strip()
    work = tempfile.mkdtemp()
    rz = subprocess.Popen(
        [os.environ.get("RHIZO_BIN", str(REPO / "target/debug/rhizo")), "serve", "--port", str(rz_port)],
        env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            if httpx.get(f"http://127.0.0.1:{rz_port}/health/readiness").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield f"http://127.0.0.1:{ref_port}", f"http://127.0.0.1:{rz_port}"
    rz.terminate()
    subprocess.run(["kill", ref_pid])


async def test_tokens_work_both_ways(servers):
    ref_url, rz_url = servers
    ref = await connect_to_server({"server_url": ref_url})
    try:
        ref_token = await ref.generate_token({"permission": "admin"})
        on_rhizo = await connect_to_server({"server_url": rz_url, "token": ref_token, "client_id": "from-ref"})
        assert on_rhizo.config.workspace == ref.config.workspace
        assert (await on_rhizo.parse_token(ref_token))["id"] == on_rhizo.config.user["id"]
        rz_token = await on_rhizo.generate_token({"permission": "read_write"})
        scope = (await ref.parse_token(rz_token))["scope"]["workspaces"]
        assert scope[ref.config.workspace] == "rw"
        on_ref = await connect_to_server(
            {"server_url": ref_url, "token": rz_token, "client_id": "from-rhizo", "workspace": ref.config.workspace}
        )
        assert on_ref.config.workspace == ref.config.workspace
        await on_ref.disconnect()
        await on_rhizo.disconnect()
    finally:
        await ref.disconnect()
