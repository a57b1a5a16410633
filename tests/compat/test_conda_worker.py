"""The built-in conda-jupyter-kernel worker (apps-workers.md §4.3) driven by the real
hypha-rpc client: an app's dependencies installed into a cached Python environment (built
with uv from PyPI — rhizo has no conda), its script run in a Jupyter kernel, ``execute``
on the worker with state kept across calls, conda-only dependencies refused, and a killed
kernel failing the session quickly.

The server of this module is a rhizo of its own, started with ``RHIZO_UV`` pointing at the
uv that tests/compat/requirements.txt installs (``.venv/bin/uv``) and a fresh environment
cache (``CONDA_CACHE_DIR``) per run, so the first start builds and later ones reuse it.
Building needs PyPI (six, ipykernel, jupyter_client, hypha-rpc; uv's own cache makes
rebuilds fast)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypha_rpc import connect_to_server

from artifact_helpers import user_token
from compat_helpers import eventually, expect_error, unique_id
from conftest import REPO, TEST_JWT_SECRET, _start_rhizo, _stop_rhizo

SCRIPT = r'''
import os
import six
from hypha_rpc import connect_to_server

server = await connect_to_server({
    "server_url": os.environ["HYPHA_SERVER_URL"],
    "workspace": os.environ["HYPHA_WORKSPACE"],
    "client_id": os.environ["HYPHA_CLIENT_ID"],
    "token": os.environ["HYPHA_TOKEN"],
})
await server.register_service({
    "id": "default",
    "name": "Six app",
    "config": {"visibility": "public"},
    "six_version": lambda: six.__version__,
})
print("registered with six", six.__version__)
'''

# Needs no server connection: started detached.
QUIET_SCRIPT = "import six\nanswer = 42\nprint('quiet app ready')\n"


def _uv() -> str | None:
    local = Path(sys.executable).parent / "uv"
    if local.exists():
        return str(local)
    return shutil.which("uv")


@pytest.fixture(scope="module")
def conda_server(request, is_external):
    """A rhizo whose built-in conda worker uses the venv's uv and a fresh cache."""
    if is_external:
        pytest.skip("the reference's conda worker needs conda; this tests rhizo's uv build")
    uv = _uv()
    if uv is None:
        msg = "uv not found (tests/compat/requirements.txt installs it into .venv)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    cache = Path(tempfile.mkdtemp(prefix="rhizo-conda-cache-"))
    server, stop, workdir = _start_rhizo({"RHIZO_UV": uv, "CONDA_CACHE_DIR": str(cache)})
    yield server.url
    _stop_rhizo(request, server, stop, workdir)
    shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture
async def user(conda_server):
    """A logged-in user in its own workspace: ``(api, controller, ws)``."""
    uid = unique_id("conda").lower()
    ws = f"ws-user-{uid}"
    api = await connect_to_server(
        {"server_url": conda_server, "workspace": ws, "token": user_token(uid, ws, TEST_JWT_SECRET)}
    )
    controller = await api.get_service("public/server-apps")
    yield api, controller, ws
    await api.disconnect()


def _messages():
    seen = []

    def cb(msg):
        seen.append(msg.get("message", "") if isinstance(msg, dict) else str(msg))

    return seen, cb


def _stdout(result) -> str:
    return "".join(o["text"] for o in result["outputs"] if o["type"] == "stream" and o["name"] == "stdout")


def _manifest(name, **extra):
    return {"name": name, "type": "conda-jupyter-kernel", "version": "0.1.0", **extra}


@pytest.mark.timeout_s(300)
async def test_a_conda_app_runs_in_its_environment_and_keeps_state(user):
    api, controller, ws = user
    workers = await controller.list_workers("conda-jupyter-kernel")
    assert any(w["id"].startswith("public/") for w in workers), workers
    seen, cb = _messages()
    app = await controller.install(
        source=SCRIPT,
        manifest=_manifest("Six", dependencies=["six==1.16.0"], entry_point="main.py"),
        overwrite=True,
        timeout=240,
        progress_callback=cb,
    )
    assert app["entry_point"] == "main.py"
    assert app["dependencies"] == ["six==1.16.0"] and app["channels"] == ["conda-forge"]
    # The verification run built the environment (this module's cache starts empty).
    assert any(m.startswith("Creating environment") for m in seen), seen
    assert any("six==1.16.0" in m for m in seen), "uv's output streams as progress"

    session = await controller.start(app["id"], timeout=120)
    sid = session["id"]
    svc = await api.get_service(f"default@{app['id']}")
    assert await svc.six_version() == "1.16.0"
    worker = await api.get_service(session["worker_id"])

    r = await worker.execute(sid, "x = 41", config={"timeout": 30.0})
    assert r == {"status": "ok", "outputs": []}, r
    r = await worker.execute(sid, "print(x + 1)", config={"timeout": 30.0})
    assert r["status"] == "ok" and _stdout(r) == "42\n", r
    r = await worker.execute(sid, "x")
    results = [o for o in r["outputs"] if o["type"] == "execute_result"]
    assert results and results[0]["data"]["text/plain"] == "41", r
    assert isinstance(results[0]["execution_count"], int) and "metadata" in results[0]

    r = await worker.execute(sid, "1/0")
    assert r["status"] == "error", r
    assert r["error"]["ename"] == "ZeroDivisionError", r
    assert r["error"]["evalue"] == "division by zero"
    assert r["error"]["traceback"], r

    r = await worker.execute(sid, "from IPython.display import display, HTML\ndisplay(HTML('<b>hi</b>'))")
    shown = [o for o in r["outputs"] if o["type"] == "display_data"]
    assert shown and "text/html" in shown[0]["data"], r

    # The app's variables and its own working directory.
    r = await worker.execute(sid, "import os; (os.environ['HYPHA_WORKSPACE'], os.environ['HYPHA_APP_ID'], os.getcwd())")
    text = r["outputs"][0]["data"]["text/plain"]
    assert ws in text and app["id"] in text, r
    # The kernel's environment is built: none of the server's secrets reach it.
    r = await worker.execute(sid, "sorted(k for k in os.environ if k in ('HYPHA_JWT_SECRET', 'HYPHA_ROOT_TOKEN'))")
    assert r["outputs"][0]["data"]["text/plain"] == "[]", r

    # output_callback receives the raw iopub messages as they come.
    got = []
    r = await worker.execute(
        sid,
        "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.2)",
        config={"timeout": 30},
        output_callback=lambda m: got.append(m),
    )
    assert r["status"] == "ok" and _stdout(r) == "tick 0\ntick 1\ntick 2\n", r
    await eventually(lambda: _has_stream(got, "tick 2"), timeout=10)
    types = [m["msg_type"] for m in got]
    assert "stream" in types and "status" in types, types
    assert all("content" in m and "header" in m for m in got), got[:2]

    # A timeout interrupts the kernel; the state survives.
    t0 = time.monotonic()
    r = await worker.execute(sid, "import time; time.sleep(30)", config={"timeout": 1})
    assert r["status"] == "error" and r["error"]["ename"] == "TimeoutError", r
    assert time.monotonic() - t0 < 15
    r = await worker.execute(sid, "x + 1")
    assert r["outputs"][0]["data"]["text/plain"] == "42", r

    logs = await worker.get_logs(sid)
    kinds = {i["type"] for i in logs["items"]}
    assert {"stdout", "info"} <= kinds, logs
    assert any("registered with six 1.16.0" in i["content"] for i in logs["items"] if i["type"] == "stdout")
    only = await worker.get_logs(sid, type="stdout")
    assert {i["type"] for i in only["items"]} == {"stdout"} and only["total"] == len(only["items"])
    info = await worker.get_session_info(sid)
    assert info["status"] == "running" and info["app_type"] == "conda-jupyter-kernel"

    # Stop and start again: the cached environment is used, nothing is built.
    await controller.stop(sid)
    err = await expect_error(worker.execute(sid, "x"))
    assert "not found" in str(err).lower(), err
    seen, cb = _messages()
    session = await controller.start(app["id"], timeout=120, progress_callback=cb)
    sid = session["id"]
    logs = await worker.get_logs(sid, type="progress")
    lines = [i["content"] for i in logs["items"]]
    assert any(m.startswith("Using cached environment") for m in lines), lines
    assert not any(m.startswith("Creating environment") for m in lines + seen), lines
    assert any(m.startswith("Using cached environment") for m in seen), seen
    r = await worker.execute(sid, "x = 1; import six; six.__version__")
    assert r["outputs"][0]["data"]["text/plain"] == "'1.16.0'", r

    # Its kernel killed: the app's connection goes with it, and the session ends.
    pid = await _kernel_pid(worker, sid)
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    try:
        r = await asyncio.wait_for(worker.execute(sid, "x"), 15)
        assert r["status"] == "error" and r["error"]["ename"] == "KernelDied", r
    except Exception as e:  # noqa: BLE001 - the controller may have stopped it already
        assert "not found" in str(e).lower(), e
    assert time.monotonic() - t0 < 10
    await eventually(lambda: _none_running(controller), timeout=20)


@pytest.mark.timeout_s(240)
async def test_a_killed_kernel_fails_the_session_with_a_clear_error(user):
    api, controller, ws = user
    app = await controller.install(
        source=QUIET_SCRIPT,
        manifest=_manifest("Quiet", dependencies="six==1.16.0"),
        overwrite=True,
        wait_for_service=False,
        timeout=240,
    )
    session = await controller.start(app["id"], wait_for_service=False, timeout=120)
    sid = session["id"]
    worker = await api.get_service(session["worker_id"])
    r = await worker.execute(sid, "answer")
    assert r["outputs"][0]["data"]["text/plain"] == "42", r
    logs = await worker.get_logs(sid)
    assert any(i["content"] == "quiet app ready\n" for i in logs["items"] if i["type"] == "stdout"), logs

    pid = await _kernel_pid(worker, sid)
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    r = await asyncio.wait_for(worker.execute(sid, "answer"), 15)
    assert time.monotonic() - t0 < 10
    assert r["status"] == "error" and r["error"]["ename"] == "KernelDied", r
    assert "exit code -9" in r["error"]["evalue"], r
    info = await worker.get_session_info(sid)
    assert info["status"] == "failed" and "Kernel died" in info["error"], info
    # Later calls fail the same way, at once.
    r = await asyncio.wait_for(worker.execute(sid, "1"), 5)
    assert r["error"]["ename"] == "KernelDied", r
    await controller.stop(sid)
    assert await controller.list_running() == []


@pytest.mark.timeout_s(240)
async def test_a_failing_script_fails_the_start_with_its_error(user):
    api, controller, ws = user
    err = await expect_error(
        controller.install(
            source="import six\nraise ValueError('no config for ' + six.__name__)",
            manifest=_manifest("Failing", dependencies=["six==1.16.0"]),
            overwrite=True,
            wait_for_service=False,
            timeout=240,
        ),
        timeout=240,
    )
    text = str(err)
    assert "Initialization script failed: ValueError: no config for six" in text, text
    assert await controller.list_running() == []


async def test_conda_only_dependencies_are_refused_with_a_list_of_them(user):
    api, controller, ws = user
    err = await expect_error(
        controller.install(
            source="print(1)",
            manifest=_manifest("Conda only", dependencies=["conda-forge::numpy", "cudatoolkit", "six", "numpy=1.26"]),
            overwrite=True,
            timeout=60,
        ),
        timeout=30,
    )
    text = str(err)
    for dep in ("conda-forge::numpy", "cudatoolkit", "numpy=1.26"):
        assert dep in text, text
    assert "uv" in text and "conda" in text, text


@pytest.mark.timeout_s(240)
async def test_a_stranger_cannot_execute_in_a_session(user, conda_server):
    api, controller, ws = user
    app = await controller.install(
        source=QUIET_SCRIPT,
        manifest=_manifest("Quiet", dependencies=["six==1.16.0"]),
        overwrite=True,
        wait_for_service=False,
        timeout=240,
    )
    session = await controller.start(app["id"], wait_for_service=False, timeout=120)
    stranger = await connect_to_server({"server_url": conda_server})
    try:
        worker = await stranger.get_service(session["worker_id"])
        err = await expect_error(worker.execute(session["id"], "answer"))
        assert "PermissionError" in str(err), err
        err = await expect_error(worker.get_logs(session["id"]))
        assert "PermissionError" in str(err), err
    finally:
        await stranger.disconnect()
        await controller.stop(session["id"])


async def _kernel_pid(worker, sid) -> int:
    r = await worker.execute(sid, "import os; os.getpid()")
    pid = int(r["outputs"][0]["data"]["text/plain"])
    info = await worker.get_session_info(sid)
    assert info["kernel_pid"] == pid, info
    return pid


async def _has_stream(msgs, text):
    assert any(m.get("msg_type") == "stream" and text in m["content"].get("text", "") for m in msgs), msgs


async def _none_running(controller):
    running = await controller.list_running()
    assert running == [], running
