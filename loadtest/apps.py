"""Server apps: cold start (a lazily started app, from ``get_service("echo@<app>")`` to its
first answer) and warm calls to the started app's service, on rhizo and on the reference
server, in one run.

The same worker runs the app on both servers: a worker written with hypha-rpc (the shape
seeds 000/001 show) registered by this process in the user's workspace, whose ``start``
connects the app's own client (the WorkerConfig's client id and token) and registers
``default`` and ``echo``. So both servers do the same work per cold start — resolve the
missing service, pick the worker, mint the app token, call ``start``, wait for the service,
route the call — and the client-side costs are the same. On rhizo the built-in python-eval
worker is measured too, with a serving script (``wait_for_exit: false``; a new Python
process per cold start, so it is dominated by interpreter start-up and imports); the
reference's python-eval waits for its script to exit and cannot serve.

Usage: .venv/bin/python loadtest/apps.py [--cold 20] [--warm 2000] [--no-reference]
(needs ``cargo build --release --bin rhizo`` and the .venv of tests/compat/requirements.txt;
the reference is installed and started with ../shared/peer/start-reference.sh, with a moto
S3 server since its server apps need S3). Prints one JSON report; BENCHMARKS.md records it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hypha_rpc import connect_to_server

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "compat"))
sys.path.insert(0, str(ROOT / "loadtest"))
from apps_helpers import FunctionWorker  # noqa: E402
from artifact_helpers import user_token  # noqa: E402
from artifacts import free_port, wait_http  # noqa: E402

SECRET = "rhizo-apps-bench-secret-0123456789abcdef"

SERVING_SCRIPT = r'''
import asyncio, os
from hypha_rpc import connect_to_server

async def main():
    server = await connect_to_server({
        "server_url": os.environ["HYPHA_SERVER_URL"], "workspace": os.environ["HYPHA_WORKSPACE"],
        "client_id": os.environ["HYPHA_CLIENT_ID"], "token": os.environ["HYPHA_TOKEN"],
    })
    await server.register_service({"id": "default", "config": {"visibility": "public"}, "setup": lambda: None})
    await server.register_service({"id": "echo", "config": {"visibility": "public"}, "echo": lambda x: x})
    await server.serve()

asyncio.run(main())
'''


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def stop_all(controller) -> None:
    for s in await controller.list_running():
        await controller.stop(s["id"], raise_exception=False)


async def cold_and_warm(url: str, ws: str, token: str, app_id: str, cold: int, warm: int) -> dict:
    api = await connect_to_server({"server_url": url, "workspace": ws, "token": token})
    controller = await api.get_service("public/server-apps")
    try:
        colds = []
        for _ in range(cold):
            await stop_all(controller)
            await asyncio.sleep(0.2)
            caller = await connect_to_server({"server_url": url, "workspace": ws, "token": token})
            t0 = time.perf_counter()
            svc = await caller.get_service(f"echo@{app_id}")
            assert await svc.echo(1) == 1
            colds.append(time.perf_counter() - t0)
            await caller.disconnect()
        svc = await api.get_service(f"echo@{app_id}")
        lat = []
        t_all = time.perf_counter()
        for i in range(warm):
            t0 = time.perf_counter()
            assert await svc.echo(i) == i
            lat.append(time.perf_counter() - t0)
        wall = time.perf_counter() - t_all
        await stop_all(controller)
        return {
            "cold_start_ms_median": round(statistics.median(colds) * 1e3, 1),
            "cold_start_ms_p90": round(pct(colds, 90) * 1e3, 1),
            "cold_start_ms_min": round(min(colds) * 1e3, 1),
            "warm_call_ms_p50": round(pct(lat, 50) * 1e3, 3),
            "warm_call_ms_p99": round(pct(lat, 99) * 1e3, 3),
            "warm_calls_per_s": round(warm / wall, 1),
        }
    finally:
        await api.disconnect()


async def measure(url: str, cold: int, warm: int, python_eval: bool) -> dict:
    user = f"bench-{os.getpid()}-{int(time.time())}"
    ws = f"ws-user-{user}"
    token = user_token(user, ws, SECRET)
    wapi = await connect_to_server({"server_url": url, "workspace": ws, "token": token})
    # Public: the reference calls workers from its `public` workspace and refuses
    # protected ones (rhizo serves protected workers of the app's own workspace).
    worker = FunctionWorker(url, ["bench-echo"], connect_app=True, visibility="public")
    await worker.register(wapi)
    api = await connect_to_server({"server_url": url, "workspace": ws, "token": token})
    controller = await api.get_service("public/server-apps")
    out = {}
    try:
        app = await controller.install(
            manifest={"name": "Bench Echo", "type": "bench-echo", "version": "0.1.0"}, source="echo", overwrite=True,
            app_id="bench-echo",
        )
        out["client_worker"] = await cold_and_warm(url, ws, token, app["id"], cold, warm)
        if python_eval:
            app = await controller.install(
                source=SERVING_SCRIPT,
                manifest={"name": "Bench Eval", "type": "python-eval", "version": "0.1.0", "entry_point": "main.py",
                          "wait_for_exit": False},
                overwrite=True, app_id="bench-eval",
            )
            out["python_eval"] = await cold_and_warm(url, ws, token, app["id"], max(3, cold // 4), warm // 4)
    finally:
        await api.disconnect()
        await wapi.disconnect()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rhizo", default=str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "rhizo"))
    ap.add_argument("--cold", type=int, default=20)
    ap.add_argument("--warm", type=int, default=2000)
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rhizo-apps-bench-"))
    procs: list[subprocess.Popen] = []
    report: dict = {"cold": args.cold, "warm": args.warm}
    try:
        port = free_port()
        env = dict(os.environ, HYPHA_JWT_SECRET=SECRET, RHIZO_PYTHON_EVAL_PYTHON=sys.executable, RHIZO_LOG="warn")
        log = open(work / "rhizo.log", "wb")
        procs.append(subprocess.Popen(
            [args.rhizo, "serve", "--port", str(port), "--database-uri", "memory", "--data-dir", str(work / "data")],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        ))
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health/readiness")
        time.sleep(1.0)  # the built-in workers connect
        report["rhizo"] = asyncio.run(measure(url, args.cold, args.warm, python_eval=True))
        if not args.no_reference:
            moto_port = free_port()
            procs.append(subprocess.Popen(
                [str(ROOT / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
            wait_http(f"http://127.0.0.1:{moto_port}/")
            ref_port = free_port()
            ref_env = dict(os.environ, HYPHA_JWT_SECRET=SECRET, HYPHA_DISABLE_INPROCESS_BROWSER_WORKER="1")
            pid = subprocess.run(
                ["bash", str(ROOT.parent / "shared" / "peer" / "start-reference.sh"), str(ref_port),
                 "--enable-server-apps", "--enable-s3", f"--endpoint-url=http://127.0.0.1:{moto_port}",
                 "--access-key-id=test", "--secret-access-key=test", "--region-name=us-east-1"],
                env=ref_env, check=True, capture_output=True, text=True,
            ).stdout.strip()
            try:
                report["reference"] = asyncio.run(measure(f"http://127.0.0.1:{ref_port}", args.cold, args.warm, python_eval=False))
            finally:
                subprocess.run(["kill", pid], check=False)
            r, ref = report["rhizo"]["client_worker"], report["reference"]["client_worker"]
            report["ratios"] = {
                "cold_start_reference_over_rhizo": round(ref["cold_start_ms_median"] / r["cold_start_ms_median"], 2),
                "warm_p50_reference_over_rhizo": round(ref["warm_call_ms_p50"] / r["warm_call_ms_p50"], 2),
            }
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
