"""The ai-cli worker under test (issue: AI-CLI worker): ``rhizo worker ai-cli`` started as
its own process with the real Claude Code and OpenCode CLIs (installed by tests/run.sh into
``$RHIZO_AI_CLIS``), an isolated ``HOME``, and a stand-in of their model APIs
(ai_cli_standin.py), so nothing leaves the machine.

``AiCliWorker.start(server_url=None, token=None)`` → the running worker: ``.http`` (its REST
base URL), ``.standin``, ``.projects`` (the allowed project base), ``.secrets`` (the API keys
it was given, to grep for), ``.request(method, path, body)`` and ``.close()``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ai_cli_standin import StandIn

CLAUDE_KEY = "sk-ant-rhizo-test-SECRET-7f3a9c"
OPENCODE_KEY = "oc-rhizo-test-SECRET-5b2e1d"


def ai_clis_bin() -> Path:
    prefix = Path(os.environ.get("RHIZO_AI_CLIS") or Path.home() / ".cache" / "rhizo-ai-clis")
    return prefix / "node_modules" / ".bin"


def clis_installed() -> bool:
    b = ai_clis_bin()
    return (b / "claude").exists() and (b / "opencode").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AiCliWorker:
    def __init__(self, binary: Path, server_url: str | None = None, token: str | None = None,
                 extra_env: dict[str, str] | None = None, max_workers: int = 6):
        self.standin = StandIn()
        self.dir = Path(tempfile.mkdtemp(prefix="rhizo-ai-cli-"))
        self.home = self.dir / "home"
        self.projects = self.dir / "projects"
        self.projects.mkdir(parents=True)
        (self.home / ".config" / "opencode").mkdir(parents=True)
        (self.home / ".config" / "opencode" / "opencode.json").write_text(json.dumps({
            "$schema": "https://opencode.ai/config.json",
            "provider": {"local": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Stand-in",
                "options": {"baseURL": self.standin.url + "/v1", "apiKey": "{env:OPENCODE_API_KEY}", "timeout": 20000},
                "models": {"standin-model": {"name": "Stand-in model"}},
            }},
            "model": "local/standin-model",
            "autoupdate": False,
            "share": "disabled",
        }))
        self.port = _free_port()
        self.http = f"http://127.0.0.1:{self.port}"
        self.secrets = [CLAUDE_KEY, OPENCODE_KEY]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HYPHA_", "ANTHROPIC_", "OPENCODE_", "CLAUDE_"))}
        env.update({
            "HOME": str(self.home),
            "PATH": f"{ai_clis_bin()}:{os.environ.get('PATH', '')}",
            "ANTHROPIC_BASE_URL": self.standin.url,
            "ANTHROPIC_API_KEY": CLAUDE_KEY,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_MAX_RETRIES": "0",
            "API_TIMEOUT_MS": "60000",
            "OPENCODE_API_KEY": OPENCODE_KEY,
            "OPENCODE_MODEL": "local/standin-model",
            "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_SHARE": "1",
            "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
            "WORKERS_BASE_DIR": str(self.dir / "sessions"),
            "AI_CLI_PROJECTS_BASE": str(self.projects),
            "MAX_WORKERS": str(max_workers),
            "WORKER_TIMEOUT": "60",
            "RUST_LOG": "info",
        })
        env.update(extra_env or {})
        args = [str(binary), "worker", "ai-cli", "--http-port", str(self.port)]
        if server_url:
            args += ["--server-url", server_url, "--workspace", "public"]
            if token:
                args += ["--token", token]
        self.log_path = self.dir / "worker.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(args, env=env, cwd=self.dir, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.request("GET", "/health")[0] == 200 and (not server_url or b"registered as" in self.log_path.read_bytes()):
                    break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the ai-cli worker did not start:\n" + self.log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.1)

    def request(self, method: str, path: str, body=None, headers=None):
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        r = urllib.request.Request(self.http + path, method=method, data=data,
                                   headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(r, timeout=30) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw.strip().startswith((b"{", b"[")) else raw.decode())
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw.strip().startswith(b"{") else raw.decode()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
        self.standin.close()
        if os.environ.get("COMPAT_KEEP_SERVER_DIR"):
            print(f"ai-cli worker files kept in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def kill_cli_in(directory: Path) -> list[int]:
    """SIGKILLs every process whose working directory is ``directory`` (the CLI of one
    session): a real crash, from outside."""
    killed = []
    target = os.path.realpath(directory)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.path.realpath(f"/proc/{pid}/cwd") == target:
                os.kill(int(pid), 9)
                killed.append(int(pid))
        except OSError:
            pass
    return killed
