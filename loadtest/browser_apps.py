"""Browser apps: cold and warm start of a ``web-worker`` app, on rhizo and on the reference
server, in one run.

The app is the one of seed 002 ("Getting Started"): source ``api.export({setup, add, echo})``,
manifest type ``web-worker``. Both servers run it in a headless Chromium — rhizo's built-in
browser worker (chromiumoxide over the DevTools protocol) and the reference's in-process
``BrowserWorker`` (Playwright) — each launching the browser on first use and keeping it
running afterwards. Measured, per server:

* **install**: ``controller.install(source, manifest, overwrite=True)``. Both servers
  verify an install by starting the app once and stopping it, so the first install also
  launches the browser; ``install_again`` re-installs (overwrite) with the browser running.
* **cold start**: the server is stopped and started again on the same state (rhizo: the
  same ``--data-dir``; the reference: the same SQLite ``--database-uri`` and the same moto
  S3 server), so the app is installed and no browser runs. A client connects (not timed),
  then ``controller.start(app_id, wait_for_service="default")`` (``start``), then
  ``get_service("default@<app>")`` + ``add(1, 2)`` (``first_call``); ``total`` is both.
  Repeated ``--restarts`` times (one cold sample per restart).
* **warm start**: ``--rounds`` cycles start → first call → stop on the last restarted
  server, with the browser already running: median and p90 of each.

Usage: .venv/bin/python loadtest/browser_apps.py [--rounds 20] [--restarts 3] [--no-reference]
(needs ``cargo build --release --bin rhizo``, ``bash assets/setup.sh``, Debian's
``chromium`` on PATH and the .venv of tests/compat/requirements.txt). The reference is
installed and started with ../shared/peer/start-reference.sh (S3 on a moto server, as in
loadtest/apps.py). Its server apps and browser worker import packages that script does not
install (boto3, pymultihash, base58, mcp, Playwright); this script pip-installs them into the
reference's venv when missing (``playwright==1.51.0``, the version hypha's requirements.txt
pins) and points Playwright at Debian's Chromium through a ``PLAYWRIGHT_BROWSERS_PATH`` whose
``chromium_headless_shell-<rev>/chrome-linux/headless_shell`` (and ``chromium-<rev>/…/chrome``)
are symlinks to ``/usr/bin/chromium`` — Playwright cannot download its own browser here.
Prints one JSON report; BENCHMARKS.md records it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hypha_rpc import connect_to_server

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "loadtest"))
from apps import pct, stop_all  # noqa: E402  (apps.py also puts tests/compat on sys.path)
from artifact_helpers import user_token  # noqa: E402
from artifacts import free_port, wait_http  # noqa: E402

SECRET = "rhizo-browser-apps-bench-secret-0123456789"
APP_ID = "bench-web-worker"
START_TIMEOUT = 120

# Seed 002's app, verbatim.
APP_SOURCE = '''
api.export({
    async setup(){
        console.log("App initialized");
    },
    async add(a, b){
        return a + b;
    },
    async echo(message){
        return message;
    }
})
'''
MANIFEST = {"name": "My Calculator", "type": "web-worker", "version": "1.0.0"}

PEER_DIR = Path(os.environ.get("PEER_DIR", Path.home() / ".cache" / "rhizo-peer"))
PEER_PY = PEER_DIR / "venv" / "bin" / "python"
PLAYWRIGHT_VERSION = "1.51.0"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def ms(x: float) -> float:
    return round(x * 1e3, 1)


def stats(xs: list[float]) -> dict:
    return {"median": ms(statistics.median(xs)), "p90": ms(pct(xs, 90)), "min": ms(min(xs)), "max": ms(max(xs))}


def browser_pids(tmp: Path) -> list[int]:
    """Chromium processes whose profile is under ``tmp`` (each server runs with TMPDIR=tmp, and
    both browser workers put the browser's profile directory in the temporary directory), so
    that other Chromium processes on the machine are not counted."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(a.startswith(b"--user-data-dir=" + str(tmp).encode()) for a in cmd):
                pids.append(int(d.name))
    return sorted(pids)


# ---------------------------------------------------------------- measurements


async def connect(url: str, ws: str, token: str):
    api = await connect_to_server({"server_url": url, "workspace": ws, "token": token, "method_timeout": START_TIMEOUT})
    return api, await api.get_service("public/server-apps")


async def install(url: str, ws: str, token: str, again: int) -> dict:
    api, controller = await connect(url, ws, token)
    try:
        times = []
        for _ in range(1 + again):
            t0 = time.perf_counter()
            app = await controller.install(source=APP_SOURCE, manifest=MANIFEST, app_id=APP_ID, overwrite=True,
                                           timeout=START_TIMEOUT)
            times.append(time.perf_counter() - t0)
        assert app["id"].endswith(APP_ID), app["id"]
        await stop_all(controller)
        return {"app_id": app["id"], "install_ms": ms(times[0]), "install_again": stats(times[1:]) if again else None}
    finally:
        await api.disconnect()


async def start_call(api, controller, app_id: str) -> tuple[str, float, float]:
    t0 = time.perf_counter()
    info = await controller.start(app_id, wait_for_service="default", timeout=START_TIMEOUT)
    t1 = time.perf_counter()
    svc = await api.get_service(f"default@{app_id}")
    assert await svc.add(1, 2) == 3
    t2 = time.perf_counter()
    return info["id"], t1 - t0, t2 - t1


async def cold(url: str, ws: str, token: str, app_id: str) -> dict:
    api, controller = await connect(url, ws, token)
    try:
        running = await controller.list_running()
        assert not running, f"apps running right after the restart: {running}"
        sid, start, call = await start_call(api, controller, app_id)
        await controller.stop(sid)
        return {"start": start, "first_call": call, "total": start + call}
    finally:
        await api.disconnect()


async def warm(url: str, ws: str, token: str, app_id: str, rounds: int) -> dict:
    api, controller = await connect(url, ws, token)
    try:
        # One untimed cycle, so that the browser runs even if the cold sample's stop closed it.
        sid, _, _ = await start_call(api, controller, app_id)
        await controller.stop(sid)
        starts, calls, stops = [], [], []
        for _ in range(rounds):
            sid, start, call = await start_call(api, controller, app_id)
            t0 = time.perf_counter()
            await controller.stop(sid)
            stops.append(time.perf_counter() - t0)
            starts.append(start)
            calls.append(call)
        return {"start": stats(starts), "first_call": stats(calls), "total": stats([a + b for a, b in zip(starts, calls)]),
                "stop": stats(stops)}
    finally:
        await api.disconnect()


# ---------------------------------------------------------------- servers


class Rhizo:
    name = "rhizo"

    def __init__(self, binary: str, work: Path):
        self.binary, self.work, self.port, self.proc = binary, work, free_port(), None
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = work / "tmp-rhizo"
        self.tmp.mkdir()

    def start(self) -> None:
        env = dict(os.environ, HYPHA_JWT_SECRET=SECRET, RHIZO_LOG=os.environ.get("RHIZO_LOG", "warn"), RHIZO_CHROMIUM=CHROMIUM, TMPDIR=str(self.tmp))
        log = open(self.work / "rhizo.log", "ab")
        # The default database: SQLite under --data-dir, which keeps the installed app.
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--port", str(self.port), "--data-dir", str(self.work / "rhizo-data")],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        wait_http(f"{self.url}/health/readiness")
        time.sleep(1.0)  # the built-in workers connect

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()


def peer_has(module: str) -> bool:
    return subprocess.run([str(PEER_PY), "-c", f"import {module}"], capture_output=True).returncode == 0


def peer_version(dist: str) -> str:
    return subprocess.run(
        [str(PEER_PY), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


def playwright_browsers(root: Path) -> Path:
    """What the reference's server apps and browser worker import beyond what
    start-reference.sh installs (pinned as hypha's requirements.txt pins them, boto3 to the
    botocore aiobotocore pinned, mcp with fastapi held where it is), and a
    PLAYWRIGHT_BROWSERS_PATH whose Chromium executables are Debian's (Playwright cannot
    download its own here)."""
    if not PEER_PY.exists():
        raise RuntimeError(f"{PEER_PY} missing: run ../shared/peer/start-reference.sh once")
    pip = [str(PEER_PY), "-m", "pip", "install", "-q"]
    needs = {
        "boto3": lambda: ["boto3", f"botocore=={peer_version('botocore')}"],  # hypha.git, with S3 on
        "multihash": lambda: ["pymultihash==0.8.2"],  # hypha.apps
        "base58": lambda: ["base58==2.1.1"],  # hypha.apps
        "mcp": lambda: ["mcp==1.11.0", f"fastapi=={peer_version('fastapi')}"],  # hypha.workers
        "playwright": lambda: [f"playwright=={PLAYWRIGHT_VERSION}"],  # hypha.workers.browser
    }
    for module, spec in needs.items():
        if not peer_has(module):
            subprocess.run(pip + spec(), check=True, stdout=sys.stderr)
    pkg = subprocess.run(
        [str(PEER_PY), "-c", "import playwright, os; print(os.path.dirname(playwright.__file__))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    browsers = json.loads((Path(pkg) / "driver" / "package" / "browsers.json").read_text())["browsers"]
    rev = {b["name"]: b["revision"] for b in browsers}
    for name, exe in (("chromium", "chrome"), ("chromium-headless-shell", "headless_shell")):
        d = root / f"{name.replace('-', '_')}-{rev[name]}"
        (d / "chrome-linux").mkdir(parents=True, exist_ok=True)
        (d / "INSTALLATION_COMPLETE").touch()
        link = d / "chrome-linux" / exe
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(CHROMIUM)
    return root


class Reference:
    name = "reference"

    def __init__(self, work: Path):
        self.work, self.port = work, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.pid: int | None = None
        self.tmp = work / "tmp-reference"
        self.tmp.mkdir()
        self.browsers = playwright_browsers(PEER_DIR / "pw-browsers")
        moto_port = free_port()
        self.moto = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_http(f"http://127.0.0.1:{moto_port}/")
        self.s3 = f"http://127.0.0.1:{moto_port}"

    def start(self) -> None:
        env = dict(os.environ, HYPHA_JWT_SECRET=SECRET, PLAYWRIGHT_BROWSERS_PATH=str(self.browsers),
                   TMPDIR=str(self.tmp))
        env.pop("HYPHA_DISABLE_INPROCESS_BROWSER_WORKER", None)
        self.pid = int(subprocess.run(
            ["bash", str(ROOT.parent / "shared" / "peer" / "start-reference.sh"), str(self.port),
             "--enable-server-apps", "--enable-s3", f"--endpoint-url={self.s3}",
             "--access-key-id=test", "--secret-access-key=test", "--region-name=us-east-1",
             f"--database-uri=sqlite+aiosqlite:///{self.work / 'reference.db'}"],
            env=env, check=True, capture_output=True, text=True,
        ).stdout.split()[-1])  # the PID is the last line (imports may print before it)

    def stop(self) -> None:
        if self.pid is None:
            return

        def alive() -> bool:
            try:  # `pid (comm) S …`: gone, or a zombie, is stopped
                return Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
            except OSError:
                return False

        try:
            os.kill(self.pid, 15)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 30
        while alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        if alive():
            os.kill(self.pid, 9)
        self.pid = None

    def close(self) -> None:
        self.stop()
        self.moto.terminate()
        self.moto.wait(10)


def wait_no_browser(tmp: Path, timeout: float = 15.0) -> list[int]:
    """The server's Chromium processes still alive after it stopped (they should all exit
    with it)."""
    deadline = time.monotonic() + timeout
    while True:
        left = browser_pids(tmp)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def measure(server, rounds: int, restarts: int, again: int) -> dict:
    user = f"bench-{os.getpid()}-{int(time.time())}"
    ws = f"ws-user-{user}"
    token = user_token(user, ws, SECRET)
    out: dict = {}
    server.start()
    try:
        inst = asyncio.run(install(server.url, ws, token, again))
        app_id = inst.pop("app_id")
        out.update(inst)
        colds = []
        for _ in range(restarts):
            server.stop()
            left = wait_no_browser(server.tmp)
            assert not left, f"{server.name}: Chromium processes outlived the server: {left}"
            server.start()
            assert not browser_pids(server.tmp), f"{server.name}: a browser runs right after the restart"
            colds.append(asyncio.run(cold(server.url, ws, token, app_id)))
            colds[-1]["browser_kept"] = bool(browser_pids(server.tmp))
        out["cold"] = {k: stats([c[k] for c in colds]) for k in ("start", "first_call", "total")}
        out["cold"]["samples_total_ms"] = [ms(c["total"]) for c in colds]
        # The browser the cold start launched still runs after the app stopped: the warm
        # rounds reuse it.
        out["browser_kept_after_stop"] = all(c["browser_kept"] for c in colds)
        out["warm"] = asyncio.run(warm(server.url, ws, token, app_id, rounds))
    finally:
        server.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rhizo", default=str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "rhizo"))
    ap.add_argument("--rounds", type=int, default=20, help="warm start → call → stop cycles")
    ap.add_argument("--restarts", type=int, default=3, help="server restarts, one cold start each")
    ap.add_argument("--install-again", type=int, default=3, help="re-installs with the browser running")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--no-rhizo", action="store_true", help="the reference only (to check its set-up)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rhizo-browser-apps-bench-"))
    report: dict = {
        "machine": {"cpus": os.cpu_count(), "chromium": subprocess.run([CHROMIUM, "--version"], capture_output=True,
                                                                       text=True).stdout.strip(),
                    # Other work on the machine shows here: the figures are not from an idle box.
                    "loadavg_1m_at_start": round(os.getloadavg()[0], 2)},
        "rounds": args.rounds, "restarts": args.restarts,
    }
    servers: list = []
    try:
        if not args.no_rhizo:
            servers.append(Rhizo(args.rhizo, work))
            report["rhizo"] = measure(servers[-1], args.rounds, args.restarts, args.install_again)
        if not args.no_reference:
            servers.append(Reference(work))
            report["reference"] = measure(servers[-1], args.rounds, args.restarts, args.install_again)
        if "rhizo" in report and "reference" in report:
            r, ref = report["rhizo"], report["reference"]
            report["ratios_reference_over_rhizo"] = {
                "install": round(ref["install_ms"] / r["install_ms"], 2),
                "install_again_median": round(ref["install_again"]["median"] / r["install_again"]["median"], 2)
                if args.install_again else None,
                "cold_total_median": round(ref["cold"]["total"]["median"] / r["cold"]["total"]["median"], 2),
                "warm_start_median": round(ref["warm"]["start"]["median"] / r["warm"]["start"]["median"], 2),
                "warm_first_call_median": round(ref["warm"]["first_call"]["median"] / r["warm"]["first_call"]["median"], 2),
                "warm_total_median": round(ref["warm"]["total"]["median"] / r["warm"]["total"]["median"], 2),
            }
    finally:
        for s in servers:
            s.close()
    report["machine"]["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
