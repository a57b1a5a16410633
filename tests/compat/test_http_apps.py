"""HTTP apps served by clients: ASGI (a real FastAPI app) and `functions` services
(workspace-api.md §8.4)."""

import hashlib

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from compat_helpers import unique_id


def make_app():
    app = FastAPI()

    @app.get("/hello")
    async def hello(name: str = "world"):
        return {"msg": f"hello {name}"}

    @app.post("/digest")
    async def digest(request: Request):
        h = hashlib.sha256()
        size = 0
        async for chunk in request.stream():  # the body arrives in chunks
            h.update(chunk)
            size += len(chunk)
        return {"size": size, "sha256": h.hexdigest()}

    @app.get("/stream")
    async def stream():
        async def gen():
            for i in range(5):
                yield f"part-{i};".encode()

        return StreamingResponse(gen(), media_type="text/plain")

    @app.get("/items/{item_id}")
    async def item(item_id: int, q: str = ""):
        return {"item_id": item_id, "q": q}

    return app


async def _register_asgi(connect):
    prov = await connect(client_id=unique_id("asgi"))
    app = make_app()

    async def serve(args, context=None):
        await app(args["scope"], args["receive"], args["send"])

    await prov.register_service(
        {"id": "web", "type": "asgi", "serve": serve, "config": {"visibility": "public", "require_context": True}}
    )
    return prov


async def test_fastapi_app_answers_over_http(server_url, connect):
    prov = await _register_asgi(connect)
    base = f"{server_url}/{prov.config.workspace}/apps/web"
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.get(f"{base}/hello", params={"name": "rhizo"})
        assert r.status_code == 200, r.text
        assert r.json() == {"msg": "hello rhizo"}
        r = await http.get(f"{base}/items/42", params={"q": "x"})
        assert r.status_code == 200 and r.json() == {"item_id": 42, "q": "x"}, r.text
        r = await http.get(f"{base}/nope")
        assert r.status_code == 404


async def test_large_request_body_arrives_whole(server_url, connect):
    prov = await _register_asgi(connect)
    body = bytes(range(256)) * (3 * 4096)  # 3 MiB
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(f"{server_url}/{prov.config.workspace}/apps/web/digest", content=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


async def test_streaming_response(server_url, connect):
    prov = await _register_asgi(connect)
    chunks = []
    async with httpx.AsyncClient(timeout=20) as http:
        async with http.stream("GET", f"{server_url}/{prov.config.workspace}/apps/web/stream") as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain")
            async for chunk in r.aiter_bytes():
                chunks.append(chunk)
    assert b"".join(chunks) == b"".join(f"part-{i};".encode() for i in range(5))


async def test_functions_service(server_url, connect):
    prov = await connect(client_id=unique_id("fns"))

    def index(event):
        return {"status": 200, "headers": {"Content-Type": "text/plain"}, "body": "index page"}

    def world(event):
        return {"status": 201, "body": f"{event['method']} {event['query_string']}"}

    def fallback(event):
        return {"status": 200, "body": f"default for {event['function_path']}"}

    await prov.register_service(
        {
            "id": "fn",
            "type": "functions",
            "config": {"visibility": "public"},
            "index": index,
            "hello": {"world": world},
            "default": fallback,
        }
    )
    base = f"{server_url}/{prov.config.workspace}/apps/fn"
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.get(f"{base}/", headers={"Origin": "http://example.test"})
        assert r.status_code == 200 and r.text == "index page", r.text
        assert r.headers["access-control-allow-origin"] == "http://example.test"
        r = await http.get(f"{base}/hello/world?a=1")
        assert r.status_code == 201 and r.text == "GET a=1", r.text
        r = await http.get(f"{base}/some/other/path")
        assert r.status_code == 200 and r.text == "default for /some/other/path", r.text
        r = await http.get(f"{server_url}/{prov.config.workspace}/apps/missing-app/")
        assert r.status_code == 404, r.text


async def test_unknown_routes_and_traversal_attempts(server_url, connect):
    prov = await connect(client_id=unique_id("trav"))

    def index(event):
        return {"status": 200, "body": "ok"}

    await prov.register_service({"id": "site", "type": "functions", "config": {"visibility": "public"}, "index": index})
    ws = prov.config.workspace
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.get(f"{server_url}/no/such/route/at/all")
        assert r.status_code == 404
        # Encoded dot segments reach the app as a path; they select no function and read
        # no file on the server.
        for path in ["%2e%2e/%2e%2e/etc/passwd", "..%2F..%2Fetc%2Fpasswd", "sub/%2e%2e/%2e%2e/x"]:
            r = await http.get(f"{server_url}/{ws}/apps/site/{path}")
            assert r.status_code == 404, (path, r.status_code, r.text)
            assert "root:" not in r.text
        r = await http.get(f"{server_url}/{ws}/apps/site")  # redirect to the trailing slash
        assert r.status_code in (301, 302, 307, 308)
        assert r.headers["location"].endswith("site/")
