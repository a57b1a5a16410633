"""Times ``controller.start`` of a conda-jupyter-kernel app (dependencies ``six==1.16.0``)
on a rhizo started for the purpose: cold (the worker's environment cache emptied before
each start, so the environment is built; uv's own package cache stays warm unless
``--cold-uv``), and warm (the cached environment reused). Not a test; run it by hand:

    cd tests/compat && RHIZO_BIN=$CARGO_TARGET_DIR/debug/rhizo \\
        ../../.venv/bin/python bench_conda_start.py [--runs 3] [--cold-uv]

Prints one line per start and the median of each kind."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hypha_rpc import connect_to_server

from artifact_helpers import user_token
from conftest import TEST_JWT_SECRET, _start_rhizo

SCRIPT = "import six\nprint('six', six.__version__)\n"


async def main(runs: int, cold_uv: bool) -> None:
    uv = Path(sys.executable).parent / "uv"
    cache = Path(tempfile.mkdtemp(prefix="rhizo-bench-envs-"))
    uv_cache = Path(tempfile.mkdtemp(prefix="rhizo-bench-uv-"))
    env = {"RHIZO_UV": str(uv), "CONDA_CACHE_DIR": str(cache)}
    if cold_uv:
        env["UV_CACHE_DIR"] = str(uv_cache)
    server, stop, workdir = _start_rhizo(env)
    try:
        ws = "ws-user-bench"
        api = await connect_to_server(
            {"server_url": server.url, "workspace": ws, "token": user_token("bench", ws, TEST_JWT_SECRET)}
        )
        ctl = await api.get_service("public/server-apps")
        app = await ctl.install(
            source=SCRIPT,
            manifest={"name": "Bench", "type": "conda-jupyter-kernel", "version": "0.1.0",
                      "dependencies": ["six==1.16.0"]},
            overwrite=True, wait_for_service=False, timeout=600,
        )
        times: dict[str, list[float]] = {"cold": [], "warm": []}
        for kind in ("cold", "warm"):
            for i in range(runs):
                if kind == "cold":
                    for d in (cache, uv_cache) if cold_uv else (cache,):
                        shutil.rmtree(d, ignore_errors=True)
                        d.mkdir()
                t0 = time.perf_counter()
                s = await ctl.start(app["id"], wait_for_service=False, timeout=600)
                dt = time.perf_counter() - t0
                times[kind].append(dt)
                print(f"{kind} start {i + 1}: {dt:.2f} s", flush=True)
                await ctl.stop(s["id"])
        for kind, ts in times.items():
            label = f"{kind}{' (uv cache empty too)' if kind == 'cold' and cold_uv else ''}"
            print(f"{label}: median {statistics.median(ts):.2f} s of {', '.join(f'{t:.2f}' for t in ts)}")
        await api.disconnect()
    finally:
        stop()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(uv_cache, ignore_errors=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--cold-uv", action="store_true", help="empty uv's package cache before each cold start")
    a = p.parse_args()
    asyncio.run(main(a.runs, a.cold_uv))
