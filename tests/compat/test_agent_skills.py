"""Agent skills (workspace-api.md §8.1 ``/{ws}/agent-skills/…``, ``/ws/agent-skills/…``):
the documents an LLM agent reads, generated from the live services. A service registered
with the real hypha-rpc client shows up with its docstring; the curl example on its page
runs as written; the zip holds SKILL.md; anonymous callers see no private services; CORS
is open; ``--disable-agent-skills`` turns it all off."""

from __future__ import annotations

import io
import json
import re
import shlex
import zipfile

import httpx
import pytest

from compat_helpers import unique_id


def add(a: int, b: int) -> int:
    """Add two integers and return the sum.

    Args:
        a: the first addend
        b: the second addend
    """
    return a + b


@pytest.fixture
async def calc(connect, server_url):
    """(client, token, workspace, service name): a client of its own workspace with a
    protected, docstring'd service, and a token for that workspace."""
    client = await connect(client_id=unique_id("skills"))
    name = unique_id("calc")
    await client.register_service(
        {
            "id": name,
            "name": "Calculator",
            "description": "Adds numbers for agents",
            "config": {"visibility": "protected"},
            "add": add,
        }
    )
    token = await client.generate_token({"permission": "read_write"})
    return client, token, client.config.workspace, name


def _get(url: str, token: str | None = None, **kw) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kw.pop("headers", {}))
    return httpx.get(url, headers=headers, timeout=15, **kw)


async def test_the_index_and_the_service_page_describe_the_live_service(server_url, calc):
    _, token, ws, name = calc
    r = _get(f"{server_url}/{ws}/agent-skills/SKILL.md", token)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/markdown")
    md = r.text
    front = re.match(r"^---\n(.*?)\n---\n", md, re.S)
    assert front, md[:200]
    fields = dict(line.split(": ", 1) for line in front.group(1).splitlines())
    assert fields["name"].startswith("hypha-")
    assert server_url in json.loads(fields["description"])
    assert f"services/{name}.md" in md
    assert "AUTH.md" in md

    listing = _get(f"{server_url}/{ws}/agent-skills/", token).json()
    assert f"services/{name}.md" in listing["files"]
    assert any(s["page"] == f"services/{name}.md" for s in listing["services"])

    page = _get(f"{server_url}/{ws}/agent-skills/services/{name}.md", token)
    assert page.status_code == 200, page.text
    assert "add(a, b)" in page.text
    assert "Add two integers and return the sum." in page.text
    assert "the first addend" in page.text
    assert "```python" in page.text and "```javascript" in page.text and "```bash" in page.text

    auth = _get(f"{server_url}/{ws}/agent-skills/AUTH.md", token)
    assert auth.status_code == 200 and "Authorization: Bearer" in auth.text

    # /ws/agent-skills/ documents the caller's own workspace.
    own = _get(f"{server_url}/ws/agent-skills/SKILL.md", token)
    assert own.status_code == 200 and f"services/{name}.md" in own.text
    assert _get(f"{server_url}/{ws}/agent-skills/nope.md", token).status_code == 404


async def test_the_curl_example_runs_as_written(server_url, calc):
    _, token, ws, name = calc
    page = _get(f"{server_url}/{ws}/agent-skills/services/{name}.md", token).text
    line = next(l for l in page.splitlines() if l.startswith("curl ") and "/add" in l)
    words = shlex.split(line.replace("$HYPHA_TOKEN", token))
    url = next(w for w in words if w.startswith("http"))
    assert url == f"{server_url}/{ws}/services/{url.rsplit('/', 2)[1]}/add"
    headers = dict(
        words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H"
    )
    body = words[words.index("-d") + 1]
    # Async: the service's provider is this test's own client, on this event loop.
    async with httpx.AsyncClient(timeout=15) as http:
        r = await http.post(url, headers=headers, content=body)
    assert r.status_code == 200, r.text
    assert r.json() == add(**json.loads(body))


async def test_the_zip_holds_every_page(server_url, calc):
    _, token, ws, name = calc
    r = _get(f"{server_url}/{ws}/agent-skills/skills.zip", token)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(r.content))
    names = z.namelist()
    skill = next(n for n in names if n.endswith("/SKILL.md"))
    assert z.read(skill).decode().startswith("---\nname: ")
    assert any(n.endswith(f"/services/{name}.md") for n in names), names


async def test_anonymous_callers_see_no_private_services(server_url, calc):
    _, _, ws, name = calc
    r = _get(f"{server_url}/{ws}/agent-skills/SKILL.md")
    assert r.status_code == 200, r.text
    assert name not in r.text
    assert "only public services are listed" in r.text
    assert _get(f"{server_url}/{ws}/agent-skills/services/{name}.md").status_code == 404
    z = zipfile.ZipFile(io.BytesIO(_get(f"{server_url}/{ws}/agent-skills/skills.zip").content))
    assert not any(name in n for n in z.namelist())
    # A bad token is refused, not taken for anonymous.
    assert _get(f"{server_url}/{ws}/agent-skills/SKILL.md", "not-a-token").status_code == 403
    assert _get(f"{server_url}/ws-no-such-{unique_id('x')}/agent-skills/SKILL.md").status_code == 404


async def test_public_lists_the_servers_own_services(server_url):
    r = _get(f"{server_url}/public/agent-skills/SKILL.md")
    assert r.status_code == 200
    assert "services/queue.md" in r.text
    q = _get(f"{server_url}/public/agent-skills/services/queue.md").text
    assert "pop(queue_name, timeout=None)" in q
    assert "/public/services/queue/push" in q


async def test_cors_is_open(server_url, calc):
    _, _, ws, _ = calc
    origin = "https://agent.example"
    r = _get(f"{server_url}/{ws}/agent-skills/SKILL.md", headers={"Origin": origin})
    assert r.headers.get("access-control-allow-origin") in (origin, "*"), r.headers
    pre = httpx.options(
        f"{server_url}/{ws}/agent-skills/SKILL.md",
        headers={"Origin": origin, "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization"},
        timeout=10,
    )
    assert pre.status_code < 300
    assert pre.headers.get("access-control-allow-origin") in (origin, "*"), pre.headers


async def test_disable_agent_skills_answers_404(request, is_external):
    if is_external:
        pytest.skip("starts a rhizo server of its own")
    from conftest import _start_rhizo, _stop_rhizo

    server, stop, workdir = _start_rhizo(args=["--disable-agent-skills", "--database-uri", "memory"])
    try:
        for path in ["/ws/agent-skills/", "/public/agent-skills/SKILL.md", "/public/agent-skills/skills.zip"]:
            r = httpx.get(server.url + path, timeout=10)
            assert r.status_code == 404, (path, r.status_code)
        # The queue is still there.
        assert httpx.get(server.url + "/public/services/queue/get_length?queue_name=x", timeout=10).json() == 0
    finally:
        _stop_rhizo(request, server, stop, workdir)
