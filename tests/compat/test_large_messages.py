"""Frames the server itself originates above 256 KiB go through the client's
``message_cache`` (protocol.md §2.4, §5.1): Python clients cannot decode a segment above
512 KiB and close the connection on frames above 1 MiB."""

import hashlib

import httpx
import pytest

from compat_helpers import unique_id


# Over HTTP the reference's per-client POST rate limit stops the 900 registrations first.
@pytest.mark.parametrize("transport", ["websocket", pytest.param("http", marks=pytest.mark.rhizo_only)])
async def test_a_large_list_services_result_arrives(connect, transport):
    c = await connect(client_id=unique_id("many"), transport=transport)
    count = 900
    for i in range(count):
        await c.register_service({"id": f"svc-{i}", "description": "d" * 1000, "f": lambda: 1})
    # About 1.1 MB of records (the reference caps descriptions at 1024 characters): more
    # than a single frame a Python client accepts.
    services = await c.list_services()
    names = {s["id"].rsplit(":", 1)[1] for s in services}
    assert {f"svc-{i}" for i in range(count)} <= names
    # The connection is still usable afterwards.
    assert await c.echo("after") == "after"


async def test_a_large_http_body_reaches_a_python_service(server_url, connect):
    prov = await connect(client_id=unique_id("digest"))

    def digest(text):
        return {"length": len(text), "sha256": hashlib.sha256(text.encode()).hexdigest()}

    await prov.register_service({"id": "digest", "config": {"visibility": "public"}, "digest": digest})
    text = "0123456789abcdef" * (2 * 1024 * 1024 // 16)  # 2 MiB in one argument
    url = f"{server_url}/{prov.config.workspace}/services/digest/digest"
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(url, json={"text": text})
    assert r.status_code == 200, r.text
    assert r.json() == {"length": len(text), "sha256": hashlib.sha256(text.encode()).hexdigest()}
