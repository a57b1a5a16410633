"""`GET /health`, the landing page `/`, the bundled JS client and the reference's metric
families in `/metrics` (workspace-api.md §8.1; issue 16 items 5 and 6)."""

import os
from pathlib import Path

import httpx
import pytest

from compat_helpers import unique_id


async def _get(server_url, path):
    async with httpx.AsyncClient(timeout=15) as http:
        return await http.get(f"{server_url}{path}")


def _samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value of every sample in a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out


def _families(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


async def test_health_diagnostics_shape(server_url, client):
    r = await _get(server_url, "/health")
    assert r.status_code == 200, r.text
    h = r.json()
    assert h["status"] == "HEALTHY", h
    assert isinstance(h["health_score"], int) and 80 <= h["health_score"] <= 100
    assert isinstance(h["issues"], list)
    assert h["timestamp"].endswith("Z")
    assert h["memory"]["rss_mb"] > 0
    assert h["memory"]["vms_mb"] >= h["memory"]["rss_mb"]
    assert 0 <= h["memory"]["percent"] <= 100
    for key in ("active", "total_created", "total_closed"):
        # (the reference reports its counters as floats)
        assert isinstance(h["connections"][key], (int, float)), key
    assert h["connections"]["active"] >= 1  # the `client` fixture
    assert isinstance(h["tasks"]["active"], int) and h["tasks"]["active"] > 0
    assert isinstance(h["event_bus"], dict) and "circuit_breaker_open" in h["event_bus"]
    assert h["event_bus"]["circuit_breaker_open"] is False
    assert isinstance(h["system"], dict) and "cpu_percent" in h["system"]
    assert "leak_monitor" in h
    assert 0 <= h["uptime_seconds"] < 86400


async def test_health_counts_a_connected_client(server_url, connect):
    before = (await _get(server_url, "/health")).json()["connections"]
    c = await connect(client_id=unique_id("health"))
    await c.list_services()
    during = (await _get(server_url, "/health")).json()["connections"]
    assert during["total_created"] >= before["total_created"] + 1
    assert during["active"] >= 1
    await c.disconnect()
    connect.clients.remove(c)
    # The close is counted once the server has seen it.
    for _ in range(50):
        after = (await _get(server_url, "/health")).json()["connections"]
        if after["total_closed"] >= during["total_closed"] + 1:
            break
    assert after["total_closed"] >= during["total_closed"] + 1, (during, after)


@pytest.mark.rhizo_only  # the reference's own index page links other things
async def test_landing_page_names_the_server(server_url):
    cfg = (await _get(server_url, "/assets/config.json")).json()
    r = await _get(server_url, "/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert cfg["server_id"] in r.text
    assert '<html lang="en">' in r.text and "<title>" in r.text
    for link in ("/health", "/metrics", "/login", "/ws/agent-skills/", "/assets/config.json"):
        assert f'href="{link}"' in r.text, link
    assert "from hypha_rpc import connect_to_server" in r.text
    # Only the root is the landing page: other paths keep their own routes.
    assert (await _get(server_url, "/health/liveness")).json()["status"] == "OK"


def _js_bundle_dir() -> Path:
    base = os.environ.get("RHIZO_ASSETS_DIR") or str(Path.home() / ".cache" / "rhizo-assets")
    return Path(base) / "node_modules" / "hypha-rpc" / "dist"


@pytest.mark.parametrize("name", ["hypha-rpc-websocket.js", "hypha-rpc-websocket.mjs"])
async def test_js_client_bundle_is_served(server_url, is_external, name):
    if not is_external and not (_js_bundle_dir() / name).is_file():
        pytest.skip(f"hypha-rpc JS bundle not installed in {_js_bundle_dir()} (bash assets/setup.sh)")
    r = await _get(server_url, f"/assets/{name}")
    assert r.status_code == 200, r.text[:200]
    assert len(r.content) > 10_000
    assert "javascript" in r.headers.get("content-type", ""), r.headers.get("content-type")
    assert "connectToServer" in r.text


async def test_metrics_export_the_reference_families(server_url, connect, is_external):
    c = await connect(client_id=unique_id("metrics"))
    await c.list_services()
    r = await _get(server_url, "/metrics")
    assert r.status_code == 200
    families = _families(r.text)
    for name in (
        "rpc_call_total",
        "client_requests_total",
        "websocket_connections",
        "websocket_connections_established_total",
        "redis_rpc_active_connections",
        "event_bus_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ):
        assert name in families, (name, sorted(families))
    s = _samples(r.text)
    assert s["rpc_call_total"] > 0
    assert s["client_requests_total"] > 0
    assert s["websocket_connections"] >= 1
    assert s["websocket_connections_established_total"] >= 1
    assert s["redis_rpc_active_connections"] >= s["websocket_connections"]
    assert s["process_resident_memory_bytes"] > 1_000_000
    assert s["process_open_fds"] > 0
    before = s["rpc_call_total"]
    await c.list_services()
    after = _samples((await _get(server_url, "/metrics")).text)
    assert after["rpc_call_total"] > before
    if not is_external:
        # The rhizo families are still there beside them.
        assert "rhizo_frames_in_total" in after
