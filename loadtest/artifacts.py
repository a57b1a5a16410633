"""Artifact file throughput: rhizo's own URLs against the S3 server directly, in one run.

Starts a moto S3 server and a release rhizo with ``--enable-s3`` on loopback, creates an
artifact with the real hypha-rpc client, and measures with curl (so the client is never
the bottleneck):

* upload of one SIZE_MIB file: to the presigned S3 URL (direct) and to rhizo's signed URL
  (``use_proxy=True``: rhizo streams the body into S3);
* download of the same file: from the presigned S3 URL and from rhizo's URL;
* the same upload/download through rhizo with the local-directory store (no S3);
* a ZIP of ZIP_FILES small files streamed by ``create-zip-file``;

and samples rhizo's RSS every 50 ms during each transfer (peak minus the RSS before).

Usage: .venv/bin/python loadtest/artifacts.py [--size-mib 1024] [--zip-files 1000]
(needs ``cargo build --release --bin rhizo`` and the .venv of tests/compat/requirements.txt).
Prints one JSON report; BENCHMARKS.md records it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from hypha_rpc import connect_to_server

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "compat"))
from artifact_helpers import user_token  # noqa: E402

SECRET = "rhizo-artifact-bench-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class RssSampler:
    """Peak RSS of ``pid`` while the block runs."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.before, self._stop = pid, 0, 0, threading.Event()

    def __enter__(self):
        self.before = self.peak = rss_kib(self.pid)
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_kib(self.pid))

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()

    @property
    def growth_mib(self) -> float:
        return round((self.peak - self.before) / 1024, 1)


def curl(args: list[str]) -> float:
    """Runs curl; returns seconds taken. Fails, with the answer, on an HTTP error status."""
    t0 = time.perf_counter()
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", *args], capture_output=True, text=True
    )
    took = time.perf_counter() - t0
    if out.returncode != 0 or not out.stdout.startswith("2"):
        err = subprocess.run(["curl", "-sS", "-X", "HEAD", args[-1]], capture_output=True, text=True)
        raise RuntimeError(f"curl {args[:-1]} -> {out.stdout} {out.stderr.strip()} ({err.stderr.strip()})")
    return took


def start_rhizo(binary: Path, workdir: Path, extra: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, HYPHA_JWT_SECRET=SECRET)
    log = open(workdir / f"rhizo-{port}.log", "wb")
    p = subprocess.Popen(
        [str(binary), "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(workdir / f"d{port}"), *extra],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health/liveness")
    return p, url


async def measure(url: str, pid: int, blob: Path, size: int, zip_files: int, s3: bool) -> dict:
    token = user_token("bench", "ws-user-bench", SECRET)
    api = await connect_to_server({"server_url": url, "token": token})
    am = await api.get_service("public/artifact-manager")
    out: dict = {}
    mib = size / (1 << 20)

    art = await am.create(alias=f"big-{int(time.time())}", manifest={"name": "big"}, stage=True)
    direct_put = await am.put_file(art["id"], file_path="direct.bin", use_proxy=False) if s3 else None
    via_put = await am.put_file(art["id"], file_path="via.bin", use_proxy=True)
    if direct_put:
        with RssSampler(pid) as r:
            t = curl(["-T", str(blob), direct_put])
        out["upload_direct_mib_s"] = round(mib / t, 1)
    with RssSampler(pid) as r:
        t = curl(["-T", str(blob), via_put])
    out["upload_rhizo_mib_s"] = round(mib / t, 1)
    out["upload_rhizo_rss_growth_mib"] = r.growth_mib
    await am.commit(art["id"])
    if s3:
        direct_get = await am.get_file(art["id"], "direct.bin", use_proxy=False)
        t = curl([direct_get])
        out["download_direct_mib_s"] = round(mib / t, 1)
    via_get = await am.get_file(art["id"], "via.bin", use_proxy=True)
    with RssSampler(pid) as r:
        t = curl([via_get])
    out["download_rhizo_mib_s"] = round(mib / t, 1)
    out["download_rhizo_rss_growth_mib"] = r.growth_mib
    if s3:
        out["upload_ratio"] = round(out["upload_rhizo_mib_s"] / out["upload_direct_mib_s"], 2)
        out["download_ratio"] = round(out["download_rhizo_mib_s"] / out["download_direct_mib_s"], 2)

    # A ZIP of many small files.
    z = await am.create(alias=f"many-{int(time.time())}", manifest={"name": "many"}, stage=True)
    names = [f"f/{i:05d}.txt" for i in range(zip_files)]
    urls = await am.put_file(z["id"], file_path=names, use_proxy=True)
    async with httpx.AsyncClient(timeout=60) as h:
        sem = asyncio.Semaphore(32)

        async def put(n):
            async with sem:
                r = await h.put(urls[n], content=(n * 40).encode().ljust(2048, b"x"))
                r.raise_for_status()

        await asyncio.gather(*(put(n) for n in names))
    await am.commit(z["id"])
    zip_url = f"{url}/ws-user-bench/artifacts/{z['alias']}/create-zip-file?token={token}"
    with RssSampler(pid) as r:
        t = curl([zip_url])
    out["zip_files"] = zip_files
    out["zip_seconds"] = round(t, 2)
    out["zip_rss_growth_mib"] = r.growth_mib
    out["rss_after_mib"] = round(rss_kib(pid) / 1024, 1)
    await api.disconnect()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--zip-files", type=int, default=1000)
    ap.add_argument("--rhizo", default=str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "rhizo"))
    args = ap.parse_args()
    binary = Path(args.rhizo)
    work = Path(tempfile.mkdtemp(prefix="rhizo-artifact-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        blob = work / "blob.bin"
        with open(blob, "wb") as f:
            chunk = os.urandom(1 << 20)
            for _ in range(args.size_mib):
                f.write(chunk)
        size = blob.stat().st_size
        moto_port = free_port()
        moto = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        procs.append(moto)
        wait_http(f"http://127.0.0.1:{moto_port}/")
        s3 = ["--enable-s3", "--endpoint-url", f"http://127.0.0.1:{moto_port}", "--access-key-id", "test",
              "--secret-access-key", "test", "--workspace-bucket", "bench"]
        p, url = start_rhizo(binary, work, s3)
        procs.append(p)
        report = {"size_mib": args.size_mib, "s3": asyncio.run(measure(url, p.pid, blob, size, args.zip_files, True))}
        p.terminate()
        p, url = start_rhizo(binary, work, [])
        procs.append(p)
        report["local"] = asyncio.run(measure(url, p.pid, blob, size, args.zip_files, False))
        print(json.dumps(report, indent=2))
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
