"""Autoscaling: the instances of an autoscaled server app following a load ramp (issue 15
item 5).

Starts a release rhizo of its own whose autoscaler decides every ``--tick-ms`` (500 ms,
``RHIZO_AUTOSCALE_TICK_MS``), installs a serving python-eval app (``wait_for_exit: false``,
``service_selection_mode: "random"``) with ``autoscaling`` (``min_instances`` 0,
``max_instances`` 5, ``target_requests_per_instance`` 600 requests/min, short cooldowns),
then offers a stepped load — 0 → low → high → higher → low → 0 requests/s, ``--step`` s
each — from ``--loops`` concurrent client loops (one connection each) calling
``echo@<app>``. Every loop paces its calls open-loop at its share of the step's rate and
resolves the service anew every ``--resolve-every`` calls (each resolution picks one of
the instances at random), and after any failed call. Every 0.5 s it records the offered
and the achieved requests/s, the p99 latency of the calls finished in that interval, the
app's running instances (``controller.list_running()``) and how many distinct instances
answered. From the series: per load step, the time until the instance count first rises
and until a new instance answers a call; per load drop, the time until the count first
falls, reaches its final value and (``min_instances: 0``) zero.

Usage: .venv/bin/python loadtest/autoscale.py [--step 16] [--svg /tmp/rhizo-autoscale.svg]
[--metric load] [--rates 0,6,25,50,6,0]
(builds ``cargo build --release --bin rhizo`` first when the binary is older than the
sources; ``--no-build`` skips that). Prints one JSON report (``--series`` adds the raw
samples) and writes an SVG chart (and a PNG next to it when ``rsvg-convert`` or
``chromium`` is found); BENCHMARKS.md records a run. The generated files are not
committed.

``--metric concurrency`` runs the ramp with ``metric_type: "concurrency"`` (target
``--target-concurrency`` calls in flight per instance, 2 by default); give the calls some
work with ``--work-ms`` (each ``echo`` sleeps that long before answering, so calls in
flight ≈ rate × work time), e.g. ``--metric concurrency --work-ms 200 --rates
0,5,20,40,5,0``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hypha_rpc import connect_to_server

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "compat"))
sys.path.insert(0, str(ROOT / "loadtest"))
from artifact_helpers import user_token  # noqa: E402
from artifacts import free_port, wait_http  # noqa: E402

SECRET = "rhizo-autoscale-bench-secret-0123456789abcdef"
SAMPLE = 0.5  # seconds between samples

SERVING_SCRIPT = r'''
import asyncio, os
from hypha_rpc import connect_to_server

async def main():
    me = os.environ["HYPHA_CLIENT_ID"]
    server = await connect_to_server({
        "server_url": os.environ["HYPHA_SERVER_URL"], "workspace": os.environ["HYPHA_WORKSPACE"],
        "client_id": me, "token": os.environ["HYPHA_TOKEN"],
    })
    await server.register_service({"id": "default", "config": {"visibility": "public"}, "setup": lambda: None})
    async def echo(x):
        if WORK_SECONDS:
            await asyncio.sleep(WORK_SECONDS)
        return [me, x]

    await server.register_service({"id": "echo", "config": {"visibility": "public"}, "echo": echo})
    await server.serve()

asyncio.run(main())
'''


# ---------------------------------------------------------------- build and server


def newest_source_mtime() -> float:
    newest = 0.0
    skip = {"target", ".venv", "node_modules", ".git", "__pycache__"}
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in skip and not d.startswith(".")]
        for f in filenames:
            if f.endswith(".rs") or f in ("Cargo.toml", "Cargo.lock"):
                try:
                    newest = max(newest, os.stat(os.path.join(dirpath, f)).st_mtime)
                except OSError:
                    pass
    return newest


def ensure_built(binary: Path) -> None:
    if binary.exists() and binary.stat().st_mtime >= newest_source_mtime():
        return
    print(f"building {binary} (older than the sources)", file=sys.stderr)
    # cargo's output goes to stderr: stdout carries the JSON report only.
    built = subprocess.run(["cargo", "build", "--release", "--bin", "rhizo"], cwd=ROOT,
                           stdout=sys.stderr).returncode == 0
    if not built:
        if not binary.exists():
            sys.exit("cargo build --release --bin rhizo failed")
        print(f"cargo build failed; measuring the existing {binary}", file=sys.stderr)


# ---------------------------------------------------------------- load


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(math.ceil(p / 100 * len(xs))) - 1)] if xs else float("nan")


class Load:
    """The shared state of the client loops: the offered rate and the calls finished."""

    def __init__(self) -> None:
        self.rate = 0.0  # requests/s offered, over all loops
        self.stop = False
        self.offered = 0  # calls scheduled
        self.done: list[tuple[float, float, str]] = []  # (finished at, latency s, instance)
        self.errors = 0
        self.resolutions = 0


async def client_loop(url: str, ws: str, token: str, svc_id: str, load: Load, k: int, loops: int,
                      resolve_every: int) -> None:
    api = await connect_to_server({"server_url": url, "workspace": ws, "token": token})
    svc = None
    calls_on_svc = 0
    next_at = 0.0
    phased_for = 0.0  # the rate the loop's schedule is for
    try:
        while not load.stop:
            rate = load.rate / loops
            if rate <= 0:
                phased_for = 0.0
                await asyncio.sleep(0.05)
                continue
            now = time.monotonic()
            if rate != phased_for:
                # A new step: the loops start k/loops of a period apart, so that the offered
                # calls are spread over the period rather than sent in bursts.
                phased_for = rate
                next_at = now + (k / loops) / rate
            if next_at > now:
                await asyncio.sleep(min(next_at - now, 0.1))
                continue
            # Open loop: one call per 1/rate; a loop that fell behind by more than a second
            # (a lazy start, a slow call) drops the backlog instead of bursting.
            next_at = max(next_at + 1.0 / rate, now - 1.0)
            load.offered += 1
            t0 = time.monotonic()
            try:
                if svc is None or calls_on_svc >= resolve_every:
                    svc = await asyncio.wait_for(api.get_service(svc_id, {"mode": "random"}), 30)
                    calls_on_svc = 0
                    load.resolutions += 1
                who, _ = await asyncio.wait_for(svc.echo(k), 10)
                calls_on_svc += 1
                load.done.append((time.monotonic(), time.monotonic() - t0, who.split("/")[-1]))
            except Exception:  # noqa: BLE001 - an instance stopped under the call, a timeout
                load.errors += 1
                svc = None
    finally:
        try:
            await asyncio.wait_for(api.disconnect(), 5)
        except Exception:  # noqa: BLE001
            pass


async def instances(controller, app_id: str) -> list[str]:
    return sorted(
        s["id"].split("/")[-1]
        for s in await controller.list_running()
        if s.get("app_id") == app_id and s.get("status") == "running"
    )


async def run(url: str, args) -> dict:
    user = f"scaler-{os.getpid()}-{int(time.time())}"
    ws = f"ws-user-{user}"
    token = user_token(user, ws, SECRET)
    api = await connect_to_server({"server_url": url, "workspace": ws, "token": token})
    controller = await api.get_service("public/server-apps")
    autoscaling = {
        "enabled": True,
        "metric_type": args.metric,
        "min_instances": args.min_instances,
        "max_instances": args.max_instances,
        "scale_up_cooldown": args.up_cooldown,
        "scale_down_cooldown": args.down_cooldown,
        "stable_window": args.stable_window,
    }
    if args.metric == "load":
        autoscaling["target_requests_per_instance"] = args.target
    else:
        autoscaling["target_concurrency_per_instance"] = args.target_concurrency
    app = await controller.install(
        source=SERVING_SCRIPT.replace("WORK_SECONDS", repr(args.work_ms / 1000)),
        manifest={"name": "Autoscale bench", "type": "python-eval", "version": "0.1.0", "entry_point": "main.py",
                  "wait_for_exit": False, "service_selection_mode": "random", "autoscaling": autoscaling},
        overwrite=True, app_id="autoscale-bench",
    )
    app_id = app["id"]
    for s in await controller.list_running():
        await controller.stop(s["id"], raise_exception=False)
    rates = [float(r) for r in args.rates.split(",")]
    load = Load()
    tasks = [
        asyncio.create_task(client_loop(url, ws, token, f"echo@{app_id}", load, k, args.loops, args.resolve_every))
        for k in range(args.loops)
    ]
    await asyncio.sleep(1.0)  # the loops connect
    series = []
    steps = []
    t_start = time.monotonic()
    seen_done = 0
    prev_offered = 0
    total = args.step * len(rates)
    next_sample = t_start + SAMPLE
    step_idx = -1
    try:
        while True:
            now = time.monotonic()
            t = now - t_start
            idx = min(int(t // args.step), len(rates) - 1)
            if idx != step_idx:
                step_idx = idx
                load.rate = rates[idx]
                steps.append({"t": round(idx * args.step, 2), "rate": rates[idx]})
            if t >= total:
                break
            await asyncio.sleep(max(0.0, next_sample - time.monotonic()))
            next_sample += SAMPLE
            inst = await instances(controller, app_id)
            done = load.done[seen_done:]
            seen_done += len(done)
            offered = load.offered - prev_offered
            prev_offered = load.offered
            lat = [d[1] for d in done]
            series.append({
                "t": round(time.monotonic() - t_start, 2),
                "rate": load.rate,
                "offered_per_s": round(offered / SAMPLE, 1),
                "achieved_per_s": round(len(done) / SAMPLE, 1),
                "p99_ms": round(pct(lat, 99) * 1e3, 1) if lat else None,
                "instances": len(inst),
                "instance_ids": inst,
                "serving": len({d[2] for d in done}),
                "answered_by": sorted({d[2] for d in done}),
                "errors": load.errors,
            })
    finally:
        load.stop = True
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in await controller.list_running():
            await controller.stop(s["id"], raise_exception=False)
        await api.disconnect()
    return {"steps": steps, "series": series, "done": load.done, "t_start": t_start, "errors": load.errors,
            "resolutions": load.resolutions, "offered": load.offered}


# ---------------------------------------------------------------- analysis


def analyse(raw: dict) -> dict:
    series, steps = raw["series"], raw["steps"]
    phases = []
    for i, st in enumerate(steps):
        t0 = st["t"]
        t1 = steps[i + 1]["t"] if i + 1 < len(steps) else math.inf
        ss = [s for s in series if t0 < s["t"] <= t1]
        done = [d for d in raw["done"] if t0 <= d[0] - raw["t_start"] < t1]
        span = (min(t1, series[-1]["t"]) - t0) if series else 0
        before = [s for s in series if s["t"] <= t0]
        n_before = before[-1]["instances"] if before else 0
        ids_before = set(before[-1]["instance_ids"]) if before else set()
        answered_before = set()
        for s in before[-4:]:  # the instances that answered in the last 2 s before the step
            answered_before |= set(s["answered_by"])
        ph = {
            "from_s": t0,
            "rate_per_s": st["rate"],
            "achieved_per_s": round(len(done) / span, 1) if span > 0 else 0,
            "p50_ms": round(pct([d[1] for d in done], 50) * 1e3, 1) if done else None,
            "p99_ms": round(pct([d[1] for d in done], 99) * 1e3, 1) if done else None,
            "instances_at_start": n_before,
            "instances_at_end": ss[-1]["instances"] if ss else n_before,
            "instances_max": max((s["instances"] for s in ss), default=n_before),
            "errors": (ss[-1]["errors"] - (before[-1]["errors"] if before else 0)) if ss else 0,
        }
        prev_rate = steps[i - 1]["rate"] if i else 0.0
        if st["rate"] > prev_rate:
            up = next((s for s in ss if s["instances"] > n_before), None)
            ph["first_new_instance_s"] = round(up["t"] - t0, 1) if up else None
            new_answer = next(
                (s for s in ss if set(s["answered_by"]) - answered_before - ids_before), None
            )
            ph["first_answer_by_new_instance_s"] = round(new_answer["t"] - t0, 1) if new_answer else None
            top = ph["instances_max"]
            reach = next((s for s in ss if s["instances"] == top), None)
            ph["reached_max_count_s"] = round(reach["t"] - t0, 1) if reach and top > n_before else None
        elif st["rate"] < prev_rate:
            down = next((s for s in ss if s["instances"] < n_before), None)
            ph["first_scale_down_s"] = round(down["t"] - t0, 1) if down else None
            final = ph["instances_at_end"]
            settle = next((s for j, s in enumerate(ss) if all(x["instances"] == final for x in ss[j:])), None)
            ph["settled_s"] = round(settle["t"] - t0, 1) if settle and final < n_before else None
            if st["rate"] == 0:
                zero = next((s for s in ss if s["instances"] == 0), None)
                ph["to_zero_s"] = round(zero["t"] - t0, 1) if zero else None
        phases.append(ph)
    return {"phases": phases}


# ---------------------------------------------------------------- chart


def svg_chart(series: list[dict], steps: list[dict], total: float, title: str) -> str:
    """Three panels over time: requests/s (offered, achieved), p99 latency (ms, log scale),
    instances (running, answering); dotted lines at the load steps."""
    W, H = 900, 640
    left, right, top = 70, 20, 40
    panel_h, gap = 160, 40
    t_max = max([s["t"] for s in series] + [total, 1.0])
    xs = lambda t: left + (W - left - right) * t / t_max  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{esc(title)}</text>']

    def panel(i: int, label: str, lines: list[tuple[str, str, list[tuple[float, float]], bool]], y_max: float,
              log: bool = False, y_min: float = 0.0):
        y0 = top + i * (panel_h + gap)
        if log:
            lo, hi = math.log10(y_min), math.log10(y_max)
            ys = lambda v: y0 + panel_h - panel_h * (math.log10(max(v, y_min)) - lo) / (hi - lo)  # noqa: E731
            ticks = [10 ** e for e in range(int(math.floor(lo)), int(math.ceil(hi)) + 1) if y_min <= 10 ** e <= y_max]
        else:
            ys = lambda v: y0 + panel_h - panel_h * v / y_max  # noqa: E731
            step = nice_step(y_max / 5)
            ticks = [k * step for k in range(int(y_max / step) + 1)]
        out.append(f'<rect x="{left}" y="{y0}" width="{W - left - right}" height="{panel_h}" fill="none" stroke="#888"/>')
        for v in ticks:
            y = ys(v)
            out.append(f'<line x1="{left}" x2="{W - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
            out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt(v)}</text>')
        out.append(f'<text x="16" y="{y0 + panel_h / 2}" transform="rotate(-90 16 {y0 + panel_h / 2})" '
                   f'text-anchor="middle">{esc(label)}</text>')
        for st in steps[1:]:
            x = xs(st["t"])
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0}" y2="{y0 + panel_h}" stroke="#bbb" '
                       'stroke-dasharray="3,3"/>')
        lx = left + 10
        for name, color, pts, stepped in lines:
            if pts:
                coords = []
                for j, (t, v) in enumerate(pts):
                    if stepped and j:
                        coords.append(f"{xs(t):.1f},{ys(pts[j - 1][1]):.1f}")
                    coords.append(f"{xs(t):.1f},{ys(v):.1f}")
                out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{" ".join(coords)}"/>')
            out.append(f'<line x1="{lx}" x2="{lx + 18}" y1="{y0 + 12}" y2="{y0 + 12}" stroke="{color}" stroke-width="2"/>')
            out.append(f'<text x="{lx + 22}" y="{y0 + 16}">{esc(name)}</text>')
            lx += 30 + 7 * len(name)

    rate_max = max([s["offered_per_s"] for s in series] + [s["achieved_per_s"] for s in series] + [1.0]) * 1.1
    panel(0, "requests/s", [
        ("offered (step)", "#999", [(st["t"], st["rate"]) for st in steps] + [(total, steps[-1]["rate"])], True),
        ("offered", "#1f77b4", [(s["t"], s["offered_per_s"]) for s in series], False),
        ("achieved", "#ff7f0e", [(s["t"], s["achieved_per_s"]) for s in series], False),
    ], rate_max)
    p99 = [(s["t"], s["p99_ms"]) for s in series if s["p99_ms"] is not None]
    p_max = max([v for _, v in p99] + [10.0]) * 1.5
    panel(1, "p99 latency, ms (log)", [("p99 of each 0.5 s", "#d62728", p99, False)], p_max, log=True, y_min=0.5)
    n_max = max([s["instances"] for s in series] + [1]) + 1
    panel(2, "instances", [
        ("running", "#2ca02c", [(s["t"], s["instances"]) for s in series], True),
        ("answering", "#9467bd", [(s["t"], s["serving"]) for s in series], True),
    ], n_max)
    y_axis = top + 3 * panel_h + 2 * gap
    step = nice_step(t_max / 10)
    for k in range(int(t_max / step) + 1):
        x = xs(k * step)
        out.append(f'<text x="{x:.1f}" y="{y_axis + 16}" text-anchor="middle">{fmt(k * step)}</text>')
    out.append(f'<text x="{(left + W - right) / 2}" y="{y_axis + 34}" text-anchor="middle">seconds</text>')
    for st in steps:
        out.append(f'<text x="{xs(st["t"]) + 3:.1f}" y="{top - 4}" fill="#666" font-size="10">{fmt(st["rate"])}/s</text>')
    out.append("</svg>")
    return "\n".join(out)


def nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_png(svg: Path) -> Path | None:
    png = svg.with_suffix(".png")
    if shutil.which("rsvg-convert"):
        cmd = ["rsvg-convert", "-o", str(png), str(svg)]
    elif shutil.which("chromium"):  # the browser worker's; renders the SVG at its size
        cmd = ["chromium", "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
               f"--screenshot={png}", "--window-size=900,640", svg.resolve().as_uri()]
    else:
        return None
    try:
        ok = subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
    except subprocess.TimeoutExpired:
        ok = False
    return png if ok and png.exists() else None


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rhizo", default=str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "rhizo"))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--metric", choices=["load", "concurrency"], default="load")
    ap.add_argument("--rates", default="0,6,25,50,6,0", help="requests/s offered per step")
    ap.add_argument("--step", type=float, default=16.0, help="seconds per step")
    ap.add_argument("--loops", type=int, default=8)
    ap.add_argument("--resolve-every", type=int, default=5)
    ap.add_argument("--tick-ms", type=int, default=500)
    ap.add_argument("--target", type=float, default=600.0, help="target_requests_per_instance (per minute)")
    ap.add_argument("--target-concurrency", type=float, default=2.0)
    ap.add_argument("--work-ms", type=float, default=0.0, help="each echo sleeps this long")
    ap.add_argument("--min-instances", type=int, default=0)
    ap.add_argument("--max-instances", type=int, default=5)
    ap.add_argument("--up-cooldown", type=float, default=2.0)
    ap.add_argument("--down-cooldown", type=float, default=4.0)
    ap.add_argument("--stable-window", type=float, default=4.0)
    ap.add_argument("--svg", default="/tmp/rhizo-autoscale.svg")
    ap.add_argument("--series", action="store_true", help="include the raw samples in the JSON")
    args = ap.parse_args()
    # hypha-rpc logs to stdout ("Connection lost" when the loops disconnect); the JSON is
    # the only thing on stdout.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, force=True)
    binary = Path(args.rhizo)
    if not args.no_build:
        ensure_built(binary)
    work = Path(tempfile.mkdtemp(prefix="rhizo-autoscale-bench-"))
    port = free_port()
    env = dict(os.environ, HYPHA_JWT_SECRET=SECRET, RHIZO_PYTHON_EVAL_PYTHON=sys.executable, RHIZO_LOG=os.environ.get("RHIZO_LOG", "warn"),
               RHIZO_AUTOSCALE_TICK_MS=str(args.tick_ms))
    log = open(work / "rhizo.log", "wb")
    proc = subprocess.Popen(
        [str(binary), "serve", "--port", str(port), "--database-uri", "memory", "--data-dir", str(work / "data")],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health/readiness")
        time.sleep(1.0)  # the built-in workers connect
        raw = asyncio.run(run(url, args))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    report = {
        "metric": args.metric,
        "work_ms": args.work_ms,
        "tick_ms": args.tick_ms,
        "autoscaling": {
            "min_instances": args.min_instances, "max_instances": args.max_instances,
            **({"target_requests_per_instance": args.target} if args.metric == "load"
               else {"target_concurrency_per_instance": args.target_concurrency}),
            "scale_up_cooldown": args.up_cooldown, "scale_down_cooldown": args.down_cooldown,
            "stable_window": args.stable_window,
        },
        "loops": args.loops, "resolve_every": args.resolve_every, "step_s": args.step,
        "rates_per_s": [float(r) for r in args.rates.split(",")],
        "calls_offered": raw["offered"], "calls_done": len(raw["done"]), "errors": raw["errors"],
        "resolutions": raw["resolutions"],
        **analyse(raw),
        "rhizo_log": str(work / "rhizo.log"),
    }
    svg = Path(args.svg)
    svg.write_text(svg_chart(raw["series"], raw["steps"], args.step * len(report["rates_per_s"]),
                             f"rhizo autoscaling ({args.metric}): python-eval app, target "
                             + (f"{fmt(args.target)} req/min" if args.metric == "load"
                                else f"{fmt(args.target_concurrency)} in flight")
                             + f" per instance, tick {args.tick_ms} ms"))
    report["svg"] = str(svg)
    png = to_png(svg)
    if png:
        report["png"] = str(png)
    if args.series:
        report["series"] = [{k: v for k, v in s.items() if k not in ("instance_ids", "answered_by")} for s in raw["series"]]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
