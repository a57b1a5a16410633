"""A2A endpoints (workspace-api.md §8.1, A2A line; ``--enable-a2a``), driven with the real
a2a-sdk 0.3.0 client and raw httpx: agent cards, ``message/send``, ``message/stream``,
tasks, JSON-RPC errors, permissions and the info route."""

import asyncio
import json
import uuid
import warnings

import httpx
import pytest
from hypha_rpc import connect_to_server

from compat_helpers import unique_id
from conftest import EXTERNAL_URL, _start_rhizo, _stop_rhizo

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from a2a.client import A2ACardResolver, A2AClient, ClientConfig, ClientFactory
    from a2a.types import (
        Message,
        MessageSendParams,
        Part,
        Role,
        SendMessageRequest,
        SendStreamingMessageRequest,
        TextPart,
    )


@pytest.fixture(scope="module")
def a2a_url(request):
    """A rhizo server started with ``--enable-a2a`` (or the external server under test)."""
    if EXTERNAL_URL:
        yield EXTERNAL_URL
        return
    server, stop, workdir = _start_rhizo(args=["--enable-a2a"])
    yield server.url
    _stop_rhizo(request, server, stop, workdir)


def _text_of(message: dict) -> str:
    return " ".join(p.get("text", "") for p in message.get("parts", []) if p.get("kind") == "text")


CARD = {
    "protocol_version": "0.3.0",
    "name": "Echo Agent",
    "description": "Echoes what it is told",
    "version": "1.0.0",
    "capabilities": {"streaming": True, "push_notifications": False},
    "default_input_modes": ["text/plain"],
    "default_output_modes": ["text/plain"],
    "skills": [{"id": "echo", "name": "Echo", "description": "Echoes the input"}],
}


async def _register(url, sid, visibility="public", card=None, run=None):
    """A hypha-rpc client with an ``a2a`` service ``sid``; returns the client."""
    api = await asyncio.wait_for(
        connect_to_server({"server_url": url, "client_id": unique_id("a2a")}), 20
    )

    async def echo(message, context=None):
        if "boom" in _text_of(message):
            raise ValueError("agent exploded")
        return f"Echo: {_text_of(message)}"

    await api.register_service(
        {
            "id": sid,
            "type": "a2a",
            "config": {"visibility": visibility},
            "agent_card": card if card is not None else CARD,
            "run": run or echo,
        }
    )
    return api


@pytest.fixture
async def agent(a2a_url):
    """(base URL of a public echo agent, its hypha-rpc client)."""
    sid = unique_id("echo")
    api = await _register(a2a_url, sid)
    yield f"{a2a_url}/{api.config.workspace}/a2a/{sid}", api
    await api.disconnect()


def _send_request(text: str, method_cls=SendMessageRequest):
    message = Message(
        message_id=str(uuid.uuid4()), role=Role.user, parts=[Part(root=TextPart(text=text))]
    )
    return method_cls(id=str(uuid.uuid4()), params=MessageSendParams(message=message))


def _rpc(method: str, params: dict, rid=1) -> dict:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}


def _user_message(text: str) -> dict:
    return {
        "role": "user",
        "parts": [{"kind": "text", "text": text}],
        "messageId": str(uuid.uuid4()),
        "kind": "message",
    }


async def test_the_card_resolves_with_the_sdk_resolver(agent):
    base, api = agent
    async with httpx.AsyncClient(timeout=20) as http:
        card = await A2ACardResolver(httpx_client=http, base_url=base).get_agent_card()
        assert card.name == "Echo Agent"
        assert card.protocol_version == "0.3.0"
        assert card.capabilities.streaming is True
        assert [s.id for s in card.skills] == ["echo"]
        # Tags a skill lacks are filled in (the reference does the same).
        assert card.skills[0].tags == ["chat"]
        # A card without a url points at this agent's JSON-RPC endpoint.
        assert card.url.rstrip("/").endswith(f"/{api.config.workspace}/a2a/{base.rsplit('/', 1)[1]}")
        raw = (await http.get(f"{base}/.well-known/agent-card.json")).json()
        assert raw["defaultInputModes"] == ["text/plain"] and "default_input_modes" not in raw
        # The older well-known name serves the same card.
        old = await http.get(f"{base}/.well-known/agent.json")
        assert old.status_code == 200 and old.json()["name"] == "Echo Agent"


async def test_a_given_card_url_and_a_card_function_are_served(a2a_url):
    sid = unique_id("dyn")
    calls = []

    def make_card():
        calls.append(1)
        return dict(CARD, name=f"Dynamic {len(calls)}", url="http://example.invalid/agent/")

    api = await _register(a2a_url, sid, card=make_card)
    try:
        base = f"{a2a_url}/{api.config.workspace}/a2a/{sid}"
        async with httpx.AsyncClient(timeout=20) as http:
            first = (await http.get(f"{base}/.well-known/agent-card.json")).json()
            second = (await http.get(f"{base}/.well-known/agent-card.json")).json()
        assert first["url"] == "http://example.invalid/agent/"
        assert first["name"] == "Dynamic 1" and second["name"] == "Dynamic 2"
    finally:
        await api.disconnect()


async def test_message_send_with_the_sdk_client_echoes(agent):
    base, _ = agent
    async with httpx.AsyncClient(timeout=30) as http:
        card = await A2ACardResolver(httpx_client=http, base_url=base).get_agent_card()
        # The card's url is this server's, so the SDK client posts to rhizo itself.
        client = A2AClient(httpx_client=http, agent_card=card)
        response = await client.send_message(_send_request("hello there"))
    result = response.root.result
    # As the reference: the agent's answer is a Message.
    assert result.kind == "message"
    assert result.role == Role.agent
    assert result.parts[0].root.text == "Echo: hello there"


async def test_the_client_factory_client_sends_and_streams(agent):
    base, _ = agent
    async with httpx.AsyncClient(timeout=30) as http:
        card = await A2ACardResolver(httpx_client=http, base_url=base).get_agent_card()
        message = Message(
            message_id=str(uuid.uuid4()), role=Role.user, parts=[Part(root=TextPart(text="hi"))]
        )
        plain = ClientFactory(ClientConfig(httpx_client=http, streaming=False)).create(card)
        answers = [a async for a in plain.send_message(message)]
        assert len(answers) == 1 and answers[0].parts[0].root.text == "Echo: hi"
        streaming = ClientFactory(ClientConfig(httpx_client=http, streaming=True)).create(card)
        updates = [a async for a in streaming.send_message(message)]
    # The streaming client folds the events into its Task: completed, with the artifact.
    task, _ = updates[-1]
    assert task.status.state.value == "completed"
    assert task.artifacts[0].parts[0].root.text == "Echo: hi"


async def test_a_generator_run_streams_artifact_chunks(a2a_url):
    sid = unique_id("gen")

    async def chunks(message, context=None):
        for word in ["one ", "two ", "three"]:
            yield word

    api = await _register(a2a_url, sid, run=chunks)
    base = f"{a2a_url}/{api.config.workspace}/a2a/{sid}"
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            body = _rpc("message/stream", {"message": _user_message("count")})
            async with http.stream("POST", base, json=body) as stream:
                events = [
                    json.loads(line[5:])["result"]
                    async for line in stream.aiter_lines()
                    if line.startswith("data:")
                ]
            r = await http.post(base, json=_rpc("message/send", {"message": _user_message("again")}))
        parts = [e["artifact"]["parts"][0]["text"] for e in events if e["kind"] == "artifact-update"]
        assert parts == ["one ", "two ", "three"]
        appends = [e["append"] for e in events if e["kind"] == "artifact-update"]
        assert appends == [False, True, True]
        assert events[-1]["status"]["state"] == "completed"
        assert _text_of(r.json()["result"]) == "one two three"
    finally:
        await api.disconnect()


async def test_message_stream_yields_task_events_ending_with_final(agent):
    base, _ = agent
    async with httpx.AsyncClient(timeout=30) as http:
        card = await A2ACardResolver(httpx_client=http, base_url=base).get_agent_card()
        client = A2AClient(httpx_client=http, agent_card=card)
        events = [
            e.root.result
            async for e in client.send_message_streaming(
                _send_request("streamed", SendStreamingMessageRequest)
            )
        ]
    kinds = [e.kind for e in events]
    assert kinds[0] == "task" and kinds[-1] == "status-update", kinds
    assert events[-1].final is True
    assert events[-1].status.state.value == "completed"
    chunks = [e for e in events if e.kind == "artifact-update"]
    assert chunks and chunks[0].artifact.parts[0].root.text == "Echo: streamed"
    assert all(e.final is False for e in events[1:-1] if e.kind == "status-update")
    # Every event belongs to the one task.
    assert {getattr(e, "task_id", None) or e.id for e in events} == {events[0].id}


async def test_tasks_get_finds_the_task_of_a_sent_message(agent):
    base, _ = agent
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(base, json=_rpc("message/send", {"message": _user_message("keep me")}))
        assert r.status_code == 200, r.text
        answer = r.json()["result"]
        assert answer["kind"] == "message" and _text_of(answer) == "Echo: keep me"
        task_id = answer["taskId"]
        r = await http.post(f"{base}/", json=_rpc("tasks/get", {"id": task_id}, rid="g"))
        got = r.json()
        assert got["id"] == "g"
        task = got["result"]
        assert task["kind"] == "task" and task["id"] == task_id
        assert task["status"]["state"] == "completed"
        assert [m["role"] for m in task["history"]] == ["user", "agent"]
        assert task["artifacts"][0]["parts"][0]["text"] == "Echo: keep me"
        r = await http.post(base, json=_rpc("tasks/get", {"id": task_id, "historyLength": 1}))
        assert [m["role"] for m in r.json()["result"]["history"]] == ["agent"]
        # An ended task cannot be canceled; an unknown one is not found.
        r = await http.post(base, json=_rpc("tasks/cancel", {"id": task_id}))
        assert r.json()["error"]["code"] == -32002
        r = await http.post(base, json=_rpc("tasks/get", {"id": "no-such-task"}))
        assert r.json()["error"]["code"] == -32001


async def test_a_failing_run_answers_an_error_message_and_a_failed_task(agent):
    base, _ = agent
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(base, json=_rpc("message/send", {"message": _user_message("boom")}))
        answer = r.json()["result"]
        assert _text_of(answer).startswith("Error:") and "agent exploded" in _text_of(answer)
        r = await http.post(base, json=_rpc("tasks/get", {"id": answer["taskId"]}))
        assert r.json()["result"]["status"]["state"] == "failed"


async def test_a_running_streamed_task_can_be_canceled(a2a_url):
    sid = unique_id("slow")
    started = asyncio.Event()

    async def slow(message, context=None):
        started.set()
        await asyncio.sleep(20)
        return "too late"

    api = await _register(a2a_url, sid, run=slow)
    base = f"{a2a_url}/{api.config.workspace}/a2a/{sid}"
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            body = _rpc("message/stream", {"message": _user_message("wait")})
            async with http.stream("POST", base, json=body) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                events = []
                async for line in stream.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    event = json.loads(line[5:])["result"]
                    events.append(event)
                    if event["kind"] == "task":
                        await asyncio.wait_for(started.wait(), 10)
                        r = await http.post(base, json=_rpc("tasks/cancel", {"id": event["id"]}))
                        assert r.json()["result"]["status"]["state"] == "canceled", r.text
            assert events[-1]["kind"] == "status-update" and events[-1]["final"] is True
            assert events[-1]["status"]["state"] == "canceled"
            # An ended task cannot be resubscribed to (as the a2a-sdk server answers).
            body = _rpc("tasks/resubscribe", {"id": events[0]["id"]})
            async with http.stream("POST", base, json=body) as stream:
                lines = [line async for line in stream.aiter_lines() if line.startswith("data:")]
            assert json.loads(lines[0][5:])["error"]["code"] == -32602
            r = await http.post(base, json=_rpc("tasks/get", {"id": events[0]["id"]}))
            assert r.json()["result"]["status"]["state"] == "canceled"
    finally:
        await api.disconnect()


# rhizo_only: the reference (a2a-sdk's pydantic validation) answers -32600 for an unknown
# method; JSON-RPC 2.0 says -32601.
@pytest.mark.rhizo_only
async def test_unknown_method_is_method_not_found(agent):
    base, _ = agent
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.post(base, json=_rpc("unknown/method", {}, rid=7))
    assert r.status_code == 200
    assert r.json()["id"] == 7 and r.json()["error"]["code"] == -32601


async def test_malformed_requests_get_json_rpc_errors(agent):
    base, _ = agent
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.post(base, content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 200 and r.json()["error"]["code"] == -32700
        assert r.json()["id"] is None
        r = await http.post(base, json={"invalid": "request"})
        assert r.json()["error"]["code"] == -32600
        r = await http.post(base, json=_rpc("message/send", {"message": {"role": "user"}}))
        assert r.json()["error"]["code"] == -32602
        r = await http.post(base, json=_rpc("tasks/get", {}))
        assert r.json()["error"]["code"] == -32602


@pytest.mark.rhizo_only
async def test_an_oversized_body_is_refused_with_413(agent):
    base, _ = agent
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(base, content=b"x" * (11 * 1024 * 1024))
    assert r.status_code == 413


async def test_unknown_and_non_a2a_services(a2a_url):
    api = await asyncio.wait_for(
        connect_to_server({"server_url": a2a_url, "client_id": unique_id("plain")}), 20
    )
    try:
        ws = api.config.workspace
        await api.register_service({"id": "plain", "config": {"visibility": "public"}, "f": lambda: 1})
        async with httpx.AsyncClient(timeout=20) as http:
            r = await http.get(f"{a2a_url}/{ws}/a2a/nonexistent/.well-known/agent-card.json")
            assert r.status_code == 404 and "not found" in r.json()["error"]
            r = await http.post(f"{a2a_url}/{ws}/a2a/nonexistent/", json=_rpc("tasks/get", {"id": "x"}))
            assert r.status_code == 404
            r = await http.post(f"{a2a_url}/{ws}/a2a/plain", json=_rpc("tasks/get", {"id": "x"}))
            assert r.status_code == 400 and "not an A2A service" in r.json()["error"]
            r = await http.get(f"{a2a_url}/{ws}/a2a-info/plain")
            assert r.status_code == 400 and r.json()["error"] == "Not an A2A service"
            r = await http.get(f"{a2a_url}/{ws}/a2a-info/nonexistent")
            assert r.status_code == 404 and "error" in r.json()
    finally:
        await api.disconnect()


async def test_a_protected_agent_needs_a_token(a2a_url):
    sid = unique_id("prot")
    api = await _register(a2a_url, sid, visibility="protected")
    try:
        ws = api.config.workspace
        token = await api.generate_token()
        base = f"{a2a_url}/{ws}/a2a/{sid}"
        card_url = f"{base}/.well-known/agent-card.json"
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.get(card_url)
            assert r.status_code in (403, 404), r.text
            r = await http.post(base, json=_rpc("message/send", {"message": _user_message("hi")}))
            assert r.status_code in (403, 404), r.text
            r = await http.get(f"{a2a_url}/{ws}/a2a-info/{sid}")
            assert r.status_code in (403, 404), r.text
            r = await http.get(card_url, headers={"Authorization": "Bearer not-a-token"})
            assert r.status_code == 401 and "error" in r.json(), r.text
            auth = {"Authorization": f"Bearer {token}"}
            r = await http.get(card_url, headers=auth)
            assert r.status_code == 200 and r.json()["name"] == "Echo Agent"
            r = await http.post(
                base, json=_rpc("message/send", {"message": _user_message("hi")}), headers=auth
            )
            assert _text_of(r.json()["result"]) == "Echo: hi"
            # The access_token cookie works as well.
            r = await http.get(card_url, headers={"Cookie": f"access_token={token}"})
            assert r.status_code == 200
            # A task is visible only through its own agent.
            task_id = (
                await http.post(base, json=_rpc("message/send", {"message": _user_message("t")}), headers=auth)
            ).json()["result"]["taskId"]
    finally:
        await api.disconnect()
    other = unique_id("other")
    api2 = await _register(a2a_url, other)
    try:
        async with httpx.AsyncClient(timeout=20) as http:
            r = await http.post(
                f"{a2a_url}/{api2.config.workspace}/a2a/{other}", json=_rpc("tasks/get", {"id": task_id})
            )
        assert r.json()["error"]["code"] == -32001
    finally:
        await api2.disconnect()


async def test_a2a_info_describes_the_agent(agent):
    base, api = agent
    ws = api.config.workspace
    sid = base.rsplit("/", 1)[1]
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.get(base.replace("/a2a/", "/a2a-info/"))
        assert r.status_code == 200, r.text
        info = r.json()
        assert info["agent_card"]["name"] == "Echo Agent"
        assert info["service"]["type"] == "a2a" and info["service"]["id"].endswith(f":{sid}")
        assert info["endpoints"] == {
            "a2a": f"/{ws}/a2a/{sid}",
            "info": f"/{ws}/a2a-info/{sid}",
            "agent_card": f"/{ws}/a2a/{sid}/.well-known/agent-card.json",
        }
        assert set(info["service_functions"]) == {"run", "agent_card"}
        # GET on the JSON-RPC endpoint itself gives the same help.
        r = await http.get(base)
        assert r.status_code == 200 and r.json()["agent_card"]["name"] == "Echo Agent"
        r = await http.get(f"{base.rsplit('/a2a/', 1)[0]}/a2a/")
        assert r.status_code == 404 and r.json()["error"] == "A2A service ID required"


async def test_a_non_blocking_send_returns_the_task_and_resubscribe_follows_it(a2a_url):
    sid = unique_id("later")
    release = asyncio.Event()

    async def waits(message, context=None):
        await asyncio.wait_for(release.wait(), 20)
        return "done at last"

    api = await _register(a2a_url, sid, run=waits)
    base = f"{a2a_url}/{api.config.workspace}/a2a/{sid}"
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            params = {"message": _user_message("go"), "configuration": {"blocking": False}}
            r = await http.post(base, json=_rpc("message/send", params))
            task = r.json()["result"]
            assert task["kind"] == "task" and task["status"]["state"] in ("submitted", "working")
            body = _rpc("tasks/resubscribe", {"id": task["id"]}, rid="re")
            events = []
            async with http.stream("POST", base, json=body) as stream:
                async for line in stream.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    response = json.loads(line[5:])
                    assert response["id"] == "re"
                    events.append(response["result"])
                    if len(events) == 1:
                        release.set()
            assert events[0]["kind"] == "task" and events[0]["id"] == task["id"]
            assert events[-1]["final"] is True and events[-1]["status"]["state"] == "completed"
            texts = [e["artifact"]["parts"][0]["text"] for e in events if e["kind"] == "artifact-update"]
            assert texts == ["done at last"]
            r = await http.post(base, json=_rpc("tasks/get", {"id": task["id"]}))
            assert r.json()["result"]["status"]["state"] == "completed"
    finally:
        await api.disconnect()
