"""Frames the server itself originates above 256 KiB go through the client's
``message_cache`` (protocol.md §2.4, §5.1): Python clients cannot decode a segment above
512 KiB and close the connection on frames above 1 MiB."""

import hashlib

import httpx
import pytest

from compat_helpers import unique_id


@pytest.mark.parametrize("transport", ["websocket", "http"])
async def test_a_large_list_services_result_arrives(connect, transport):
    c = await connect(client_id=unique_id("many"), transport=transport)
    mgr = await c.get_service("~")
    prefix = f"{c.config.workspace}/{c.config.client_id}"
    count = 900
    for i in range(count):
        await mgr.register_service(
            {"id": f"{prefix}:svc-{i}", "name": f"svc-{i}", "description": "d" * 1200, "config": {}}
        )
    # About 1.3 MB of records: more than a single frame a Python client accepts.
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
