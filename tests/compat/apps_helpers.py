"""Helpers for the server-apps compatibility tests (test_server_apps.py): a logged-in user
in its own workspace, and workers written the way seeds 000/001 show them (plain
functions registered with ``register_service``), with a few knobs for the tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from hypha_rpc import connect_to_server

from compat_helpers import unique_id


@dataclass
class AppsUser:
    """A non-anonymous user connected in its own workspace ``ws-user-<id>`` (admin there)."""

    url: str
    api: Any
    controller: Any
    ws: str
    user_id: str
    token: str


@dataclass
class FunctionWorker:
    """A worker made of plain functions (seed 001, "Method 2"), with state the tests read.

    ``connect_app``: ``start`` connects as the app's own client (``client_id``/``token`` of
    the WorkerConfig) and registers a ``default`` and an ``echo`` service, so the app
    registers services like a real one. ``fail_start``: ``start`` raises.
    """

    server_url: str
    types: list[str]
    connect_app: bool = False
    fail_start: bool = False
    visibility: str = "protected"
    sessions: dict = field(default_factory=dict)
    configs: list = field(default_factory=list)
    stopped: list = field(default_factory=list)
    api: Any = None
    service: Any = None

    async def start(self, config, context=None):
        session_id = config["id"]
        self.configs.append(config)
        cb = config.get("progress_callback")
        if cb:
            await cb({"type": "info", "message": f"Starting session {session_id}"})
        if self.fail_start:
            raise RuntimeError("this worker cannot start anything")
        info = {
            "session_id": session_id,
            "app_id": config["app_id"],
            "workspace": config["workspace"],
            "client_id": config["client_id"],
            "status": "running",
            "app_type": config["manifest"]["type"],
            "created_at": "2024-01-01T00:00:00Z",
            "entry_point": config.get("entry_point"),
            "metadata": config["manifest"],
        }
        data = {"logs": [f"Session {session_id} started"], "info": info}
        if self.connect_app:
            app = await connect_to_server(
                {
                    "server_url": config["server_url"],
                    "client_id": config["client_id"],
                    "workspace": config["workspace"],
                    "token": config["token"],
                }
            )
            await app.register_service(
                {"id": "default", "name": "Echo App", "config": {"visibility": "public"}, "setup": lambda: None}
            )
            await app.register_service(
                {"id": "echo", "config": {"visibility": "public"}, "echo": lambda x: x, "whoami": lambda: config["client_id"]}
            )
            data["app"] = app
        self.sessions[session_id] = data
        return session_id

    async def stop(self, session_id, context=None):
        self.stopped.append(session_id)
        data = self.sessions.pop(session_id, None)
        if data and data.get("app"):
            await data["app"].disconnect()

    async def list_sessions(self, workspace, context=None):
        return [d["info"] for d in self.sessions.values() if d["info"]["workspace"] == workspace]

    async def get_session_info(self, session_id, context=None):
        if session_id not in self.sessions:
            raise Exception(f"Session {session_id} not found")
        return self.sessions[session_id]["info"]

    async def get_logs(self, session_id, type=None, offset=0, limit=None, context=None):
        if session_id not in self.sessions:
            return [] if type else {"log": [], "error": []}
        logs = self.sessions[session_id]["logs"]
        logs = logs[offset : offset + limit] if limit else logs[offset:]
        return logs if type else {"log": logs, "error": []}

    async def execute(self, session_id, script, config=None, progress_callback=None, context=None):
        if progress_callback:
            await progress_callback({"type": "info", "message": "executing"})
        self.sessions[session_id]["logs"].append(f"ran {script}")
        return {"status": "ok", "outputs": [{"type": "stream", "name": "stdout", "text": script.upper()}]}

    async def register(self, api=None):
        self.api = api or await connect_to_server({"server_url": self.server_url})
        self.service = await self.api.register_service(
            {
                "id": unique_id("simple-worker"),
                "name": "Simple Worker",
                "description": "A simple worker implemented with functions",
                "type": "server-app-worker",
                "config": {"visibility": self.visibility, "run_in_executor": True},
                "supported_types": self.types,
                "start": self.start,
                "stop": self.stop,
                "list_sessions": self.list_sessions,
                "get_logs": self.get_logs,
                "get_session_info": self.get_session_info,
                "execute": self.execute,
            }
        )
        return self.service


async def wait_until(predicate, timeout: float = 15.0, interval: float = 0.2):
    """Polls ``await predicate()`` until truthy; returns its value or fails after ``timeout``."""
    deadline = asyncio.get_event_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_event_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
