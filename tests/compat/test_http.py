"""Plain HTTP endpoints (workspace-api.md §8.1)."""

import httpx

from compat_helpers import unique_id


async def _get(server_url, path):
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(f"{server_url}{path}")


async def test_health_liveness(server_url):
    r = await _get(server_url, "/health/liveness")
    assert r.status_code == 200
    assert r.json()["status"] == "OK"


async def test_health_readiness(server_url):
    r = await _get(server_url, "/health/readiness")
    assert r.status_code == 200
    assert r.json()["status"] == "OK"


async def test_assets_config_json(server_url, connect):
    r = await _get(server_url, "/assets/config.json")
    assert r.status_code == 200
    cfg = r.json()
    assert isinstance(cfg, dict)
    assert isinstance(cfg["public_base_url"], str) and cfg["public_base_url"].startswith("http")
    c = await connect(client_id=unique_id("cfg"))
    # the same public URL is announced in connection_info
    assert cfg["public_base_url"].rstrip("/") == c.config.public_base_url.rstrip("/")
