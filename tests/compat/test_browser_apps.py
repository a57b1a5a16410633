"""The built-in browser worker (apps-workers.md §2.2–2.3, §4.7; seed 002's quick start):
web-worker, window, iframe, hypha (ImJoy XML), web-python (Pyodide) and web-app apps run
as pages of one real headless Chromium (Debian's), driven through ``public/server-apps``
by the real hypha-rpc client; their pages load the hypha-rpc JS client and Pyodide from
the server itself (``/assets/``)."""

from __future__ import annotations

import asyncio
import http.server
import io
import os
import shutil
import signal
import tempfile
import threading

import httpx
import pytest

from apps_helpers import wait_until
from compat_helpers import expect_error

pytestmark = pytest.mark.skipif(
    shutil.which(os.environ.get("RHIZO_CHROMIUM", "chromium")) is None and not os.environ.get("CI"),
    reason="Chromium is not installed (CI installs it: .ci/run)",
)

# Seed 002, "Step 2: Installing Your First App", as written.
QUICK_START_SOURCE = '''
api.export({
    async setup(){
        console.log("App initialized");
    },
    async add(a, b){
        return a + b;
    },
    async echo(message){
        return message;
    }
})
'''

# Seed 002, "Window Apps", as written.
DASHBOARD_SOURCE = '''
<config lang="yaml">
name: Interactive Dashboard
type: window
version: 1.0.0
</config>

<script lang="javascript">
class Dashboard {
    constructor() {
        this.setupUI();
    }

    setupUI() {
        document.body.innerHTML = `
            <h1>Interactive Dashboard</h1>
            <button id="updateBtn">Update Data</button>
            <div id="dataDisplay"></div>
        `;

        document.getElementById('updateBtn').onclick = () => {
            this.updateData();
        };
    }

    updateData() {
        const data = Math.random() * 100;
        document.getElementById('dataDisplay').innerHTML = `Data: ${data.toFixed(2)}`;
    }
}

api.export({
    dashboard: new Dashboard()
});
</script>
'''

# An ImJoy plugin with the tags a window page is built from.
IMJOY_PLUGIN = '''
<docs>A greeting plugin.</docs>
<config lang="json">
{"name": "Greeter", "version": "0.2.0", "description": "Says hello"}
</config>
<window>
<div id="greeting">Hello from the window tag</div>
</window>
<style>
#greeting { color: rgb(0, 128, 0); }
</style>
<script lang="javascript">
class Greeter {
    async setup() { console.log("greeter ready"); }
    async greet(name) { return `Hello, ${name}!`; }
    async shown() { return document.getElementById("greeting").textContent.trim(); }
}
api.export(new Greeter());
</script>
'''

WEB_PYTHON_SOURCE = '''
<config lang="yaml">
name: Python Stats
type: web-python
version: 1.0.0
</config>

<script lang="python">
import os
import statistics
from hypha_rpc import api

counter = {"n": 0}

def add(a, b):
    return a + b

async def stats(values):
    counter["n"] += 1
    return {"mean": statistics.mean(values), "calls": counter["n"], "app": os.environ.get("HYPHA_APP_ID")}

async def peers():
    # The page's connection, as the JS client gives it to Python.
    return len(await api.list_services())

print("python app loaded")
api.export({"add": add, "stats": stats, "peers": peers})
</script>
'''


async def _raises(awaitable, text: str, timeout: float = 60.0) -> BaseException:
    """The error ``awaitable`` raises, which must mention ``text``."""
    err = await expect_error(awaitable, timeout)
    assert text in str(err), f"expected {text!r} in: {err}"
    return err


async def _start(u, source, manifest, timeout=60, **kw):
    app = await u.controller.install(source=source, manifest=manifest, overwrite=True, timeout=timeout, **kw)
    started = await u.controller.start(app["id"], wait_for_service="default", timeout=timeout)
    return app, started


async def _not_running(u, session_id) -> bool:
    return session_id not in [s["id"] for s in await u.controller.list_running()]


async def _worker_of(u, started):
    return await u.api.get_service(started["worker_id"])


async def test_the_seed_quick_start_runs_as_written(apps_user):
    """Seed 002 steps 2–4: install the web-worker calculator, start it, call it, reach the
    worker directly from the app's own workspace (get_logs, execute), list, stop, uninstall."""
    u = await apps_user()
    app_info = await u.controller.install(
        source=QUICK_START_SOURCE,
        manifest={"name": "My Calculator", "type": "web-worker", "version": "1.0.0"},
        overwrite=True,
    )
    started_app = await u.controller.start(app_info.id, wait_for_service="default", timeout=30)
    assert started_app.worker_id.startswith("public/") and started_app.worker_id.endswith(":browser-worker")

    app_service = await u.api.get_service(f"default@{app_info.id}")
    assert await app_service.add(5, 3) == 8
    assert await app_service.echo("Hello, World!") == "Hello, World!"
    assert await app_service.add(1, 2) == 3

    # Step 3.6: the worker itself, from the app's workspace (the reference refuses this).
    worker = await u.api.get_service(started_app.worker_id)
    logs = await worker.get_logs(started_app.id)
    assert set(logs) == {"items", "total", "offset", "limit"} and logs["limit"] is None
    assert logs["total"] == len(logs["items"]) > 0
    console = [i["content"] for i in logs["items"] if i["type"] == "console"]
    assert any("App initialized" in c for c in console), console
    assert hasattr(worker, "execute")
    assert await worker.execute(started_app.id, "1 + 2", config={"timeout": 30.0}) == 3
    title = await worker.execute(started_app.id, "document.title")
    assert title == "My Calculator"
    only_info = await worker.get_logs(started_app.id, type="info")
    assert only_info["items"] and all(i["type"] == "info" for i in only_info["items"])

    # Step 4.
    apps = await u.controller.list_apps()
    assert app_info.id in [a["id"] for a in apps]
    running = await u.controller.list_running()
    assert started_app.id in [s["id"] for s in running]
    await u.controller.stop(started_app.id)
    await _raises(worker.get_logs(started_app.id), "Session not found")
    await u.controller.uninstall(app_info.id)
    assert app_info.id not in [a["id"] for a in await u.controller.list_apps()]


async def test_a_stranger_cannot_use_the_worker_on_someone_elses_session(apps_user):
    u = await apps_user()
    app, started = await _start(u, QUICK_START_SOURCE, {"name": "Private", "type": "web-worker", "version": "1.0.0"})
    other = await apps_user("stranger")
    worker = await other.api.get_service(started["worker_id"])
    await _raises(worker.execute(started["id"], "document.cookie"), "PermissionError")
    await _raises(worker.take_screenshot(started["id"]), "PermissionError")
    await u.controller.stop(started["id"])


async def test_the_seed_window_app_builds_its_page_and_exports_a_class_instance(apps_user):
    u = await apps_user()
    app, started = await _start(u, DASHBOARD_SOURCE, {"name": "Interactive Dashboard", "type": "window", "version": "1.0.0"})
    assert app["entry_point"] == "index.html" and app["name"] == "Interactive Dashboard"
    worker = await _worker_of(u, started)
    assert await worker.execute(started["id"], "document.querySelector('h1').textContent") == "Interactive Dashboard"
    await worker.execute(started["id"], "document.getElementById('updateBtn').click()")
    shown = await worker.execute(started["id"], "document.getElementById('dataDisplay').textContent")
    assert shown.startswith("Data: "), shown
    svc = await u.api.get_service(f"default@{app['id']}")
    assert svc is not None
    await u.controller.stop(started["id"])


async def test_a_screenshot_is_a_png_of_what_the_app_drew(apps_user):
    from PIL import Image

    u = await apps_user()
    source = '''
document.body.style.margin = "0";
const box = document.createElement("div");
box.style.cssText = "position:fixed;left:0;top:0;width:200px;height:100px;background:rgb(255,0,0)";
document.body.appendChild(box);
document.body.style.background = "rgb(0,0,255)";
api.export({ async ping() { return "pong"; } });
'''
    app, started = await _start(u, source, {"name": "Painter", "type": "window", "version": "1.0.0"})
    worker = await _worker_of(u, started)
    png = await worker.take_screenshot(started["id"])
    assert isinstance(png, bytes) and png[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(png)).convert("RGB")
    assert img.size == (1280, 720)
    assert img.getpixel((50, 50)) == (255, 0, 0), "inside the red box"
    assert img.getpixel((600, 400)) == (0, 0, 255), "the blue page"
    jpeg = await worker.take_screenshot(started["id"], "jpeg")
    assert jpeg[:2] == b"\xff\xd8"
    await _raises(worker.take_screenshot(started["id"], "gif"), "expected")
    await u.controller.stop(started["id"])


async def test_cookies_and_storage_from_the_manifest_are_set_before_the_page_loads(apps_user):
    u = await apps_user()
    source = "api.export({ async jar() { return [document.cookie, localStorage.getItem('theme'), sessionStorage.getItem('n')]; } });"
    manifest = {
        "name": "Jar", "type": "window", "version": "1.0.0",
        "cookies": {"flavour": "oat"}, "local_storage": {"theme": "dark"}, "session_storage": {"n": 3},
    }
    app, started = await _start(u, source, manifest)
    svc = await u.api.get_service(f"default@{app['id']}")
    cookie, theme, n = await svc.jar()
    assert "flavour=oat" in cookie and theme == "dark" and n == "3"
    await u.controller.stop(started["id"])


async def test_an_imjoy_plugin_gets_its_window_style_and_config(apps_user):
    """No manifest: the type is `hypha` (a legacy ImJoy plugin), compiled with the window
    template from the plugin's own tags."""
    u = await apps_user()
    app = await u.controller.install(source=IMJOY_PLUGIN, overwrite=True, timeout=60)
    assert app["type"] == "hypha" and app["name"] == "Greeter" and app["version"] == "0.2.0"
    started = await u.controller.start(app["id"], wait_for_service="default", timeout=60)
    svc = await u.api.get_service(f"default@{app['id']}")
    assert await svc.greet("Ada") == "Hello, Ada!"
    assert await svc.shown() == "Hello from the window tag"
    worker = await _worker_of(u, started)
    color = await worker.execute(started["id"], "getComputedStyle(document.getElementById('greeting')).color")
    assert color == "rgb(0, 128, 0)"
    logs = await worker.get_logs(started["id"], type="console")
    assert any("greeter ready" in i["content"] for i in logs["items"]), logs
    await u.controller.stop(started["id"])


async def test_iframe_apps_run_a_ready_html_page_or_a_script(apps_user, server_url):
    u = await apps_user()
    html = '''<!DOCTYPE html>
<html><head><title>Ready page</title></head><body><p id="p">ready</p>
<script type="module">
const q = new URLSearchParams(location.search);
const { hyphaWebsocketClient } = await import(q.get("server_url") + "/assets/hypha-rpc-websocket.mjs");
const server = await hyphaWebsocketClient.connectToServer({
  server_url: q.get("server_url"), workspace: q.get("workspace"),
  client_id: q.get("client_id"), token: q.get("token"),
});
await server.registerService({ id: "default", name: "Ready", async triple(x) { return 3 * x; } });
</script></body></html>'''
    app, started = await _start(u, html, {"name": "Ready", "type": "iframe", "version": "1.0.0"})
    svc = await u.api.get_service(f"default@{app['id']}")
    assert await svc.triple(7) == 21
    await u.controller.stop(started["id"])

    app2, started2 = await _start(
        u, "api.export({ async hi() { return 'hi from an iframe script'; } });",
        {"name": "Scripted", "type": "iframe", "version": "1.0.0"},
    )
    svc2 = await u.api.get_service(f"default@{app2['id']}")
    assert await svc2.hi() == "hi from an iframe script"
    await u.controller.stop(started2["id"])
    # The client the pages load is the server's own copy.
    r = httpx.get(f"{server_url}/assets/hypha-rpc-websocket.mjs")
    assert r.status_code == 200 and "connectToServer" in r.text


async def test_a_window_app_calls_back_into_a_python_service(apps_user):
    u = await apps_user()
    helper = await apps_user.client(u)
    seen = []

    def multiply(a, b):
        seen.append((a, b))
        return a * b

    await helper.register_service({"id": "py-helper", "config": {"visibility": "protected"}, "multiply": multiply})
    source = '''
api.export({
    async compute(a, b) {
        const helper = await api.getService("py-helper");
        return (await helper.multiply(a, b)) + 1;
    }
});
'''
    app, started = await _start(u, source, {"name": "Caller", "type": "window", "version": "1.0.0"})
    svc = await u.api.get_service(f"default@{app['id']}")
    assert await svc.compute(6, 7) == 43
    assert seen == [(6, 7)]
    await u.controller.stop(started["id"])


async def test_a_web_python_app_runs_in_pyodide_served_by_the_server(apps_user, server_url):
    assert httpx.get(f"{server_url}/assets/pyodide/pyodide.mjs").status_code == 200
    u = await apps_user()
    app, started = await _start(u, WEB_PYTHON_SOURCE, {"name": "Python Stats", "type": "web-python", "version": "1.0.0"}, timeout=90)
    svc = await u.api.get_service(f"default@{app['id']}")
    assert await svc.add(1, 2) == 3
    first = await svc.stats([1, 2, 3])
    assert first == {"mean": 2, "calls": 1, "app": app["id"]}
    assert (await svc.stats([2.5, 3.5]))["calls"] == 2, "module state is kept between calls"
    assert await svc.peers() >= 1
    worker = await _worker_of(u, started)
    logs = await worker.get_logs(started["id"], type="console")
    assert any("python app loaded" in i["content"] for i in logs["items"]), logs
    await u.controller.stop(started["id"])


async def test_web_python_requirements_not_on_the_servers_pyodide_fail_with_a_clear_error(apps_user):
    u = await apps_user()
    source = WEB_PYTHON_SOURCE.replace("version: 1.0.0", "version: 1.0.0\nrequirements: [numpy]")
    err = await _raises(
        u.controller.install(source=source, manifest={"name": "Needs numpy", "type": "web-python", "version": "1.0.0"}, overwrite=True, timeout=30),
        "numpy",
    )
    assert "RHIZO_PYODIDE_URL" in str(err), err


def _pyodide_mirror(root) -> str:
    """A Pyodide distribution as a deployment would host it: the server's core files plus
    one package of its own (a pure-Python wheel, listed in the lock file), served with CORS
    on loopback. Returns its URL and its HTTP server (to shut down)."""
    import hashlib
    import json
    import zipfile
    from pathlib import Path

    core = Path(os.environ.get("RHIZO_ASSETS_DIR") or Path.home() / ".cache/rhizo-assets") / "node_modules/pyodide"
    root = Path(root)
    for f in core.iterdir():
        if f.is_file():
            shutil.copy(f, root / f.name)
    wheel = root / "rhizo_mirror_probe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("rhizo_mirror_probe/__init__.py", "VALUE = 42\n")
        z.writestr("rhizo_mirror_probe-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: rhizo-mirror-probe\nVersion: 1.0\n")
        z.writestr("rhizo_mirror_probe-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("rhizo_mirror_probe-1.0.dist-info/RECORD", "")
    lock = json.loads((root / "pyodide-lock.json").read_text())
    lock["packages"]["rhizo-mirror-probe"] = {
        "name": "rhizo-mirror-probe", "version": "1.0", "file_name": wheel.name, "install_dir": "site",
        "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(), "package_type": "package",
        "imports": ["rhizo_mirror_probe"], "depends": [], "unvendored_tests": False,
    }
    (root / "pyodide-lock.json").write_text(json.dumps(lock))

    class Mirror(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def end_headers(self):
            self.send_header("Access-Control-Allow-Origin", "*")
            super().end_headers()

        def log_message(self, *args):
            pass

    Mirror.extensions_map = {**Mirror.extensions_map, ".wasm": "application/wasm", ".mjs": "text/javascript"}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Mirror)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}/", httpd


class _Pages(http.server.SimpleHTTPRequestHandler):
    PAGE = b'''<!DOCTYPE html>
<html><head><title>External</title></head><body>
<script type="module">
const q = new URLSearchParams(location.search);
const { hyphaWebsocketClient } = await import(q.get("server_url") + "/assets/hypha-rpc-websocket.mjs");
const server = await hyphaWebsocketClient.connectToServer({
  server_url: q.get("server_url"), workspace: q.get("workspace"),
  client_id: q.get("client_id"), token: q.get("token"),
});
await server.registerService({ id: "default", name: "External", async where() { return location.pathname; } });
</script></body></html>'''

    # The headers of every request the page server got: (path, Authorization).
    seen: list = []

    def do_GET(self):  # noqa: N802 - http.server's name
        self.seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(self.PAGE)))
        self.end_headers()
        self.wfile.write(self.PAGE)

    def log_message(self, *args):
        pass


async def test_a_web_app_opens_an_external_url_with_the_credentials_it_asks_for(apps_user):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        u = await apps_user()
        url = f"http://127.0.0.1:{httpd.server_address[1]}/external/app.html"
        app = await u.controller.install(
            manifest={
                "name": "External", "type": "web-app", "version": "1.0.0", "entry_point": url,
                "inject_auth_params": True, "authorization_token": "page-secret",
            },
            overwrite=True,
            timeout=60,
        )
        assert app["entry_point"] == url
        started = await u.controller.start(app["id"], wait_for_service="default", timeout=60)
        svc = await u.api.get_service(f"default@{app['id']}")
        assert await svc.where() == "/external/app.html"
        path, auth = next(r for r in _Pages.seen if r[0].startswith("/external/"))
        assert path.startswith("/external/app.html?server_url=") and "client_id=" in path and "token=" in path
        assert auth == "Bearer page-secret", "the manifest's authorization_token rides on every request"
        await u.controller.stop(started["id"])
        await _raises(
            u.controller.install(manifest={"name": "No URL", "type": "web-app", "version": "1.0.0", "entry_point": "index.html"}, overwrite=True),
            "http(s):// URL",
        )
    finally:
        httpd.shutdown()


async def test_the_page_settings_and_the_session_cap_come_from_the_environment(apps_user):
    """A server whose browser worker takes one session, in French, at 640×480, with a
    Pyodide mirror of its own for web-python requirements."""
    from conftest import _start_rhizo, ROOT_TOKEN  # noqa: F401 - the suite's own starter
    from hypha_rpc import connect_to_server

    mirror_dir = tempfile.mkdtemp(prefix="pyodide-mirror-")
    mirror, mirror_httpd = _pyodide_mirror(mirror_dir)
    server, stop, workdir = _start_rhizo(extra_env={
        "RHIZO_PYODIDE_URL": mirror,
        "RHIZO_BROWSER_MAX_SESSIONS": "1",
        "RHIZO_BROWSER_LOCALE": "fr-FR",
        "RHIZO_BROWSER_VIEWPORT_WIDTH": "640",
        "RHIZO_BROWSER_VIEWPORT_HEIGHT": "480",
        "RHIZO_BROWSER_EXTRA_HTTP_HEADERS": '{"X-Rhizo-Test": "yes"}',
    })
    try:
        api = await connect_to_server({"server_url": server.url, "token": ROOT_TOKEN})
        controller = await api.get_service("public/server-apps")
        a = await controller.install(source=QUICK_START_SOURCE, manifest={"name": "A", "type": "web-worker", "version": "1.0.0"}, overwrite=True)
        b = await controller.install(source=QUICK_START_SOURCE, manifest={"name": "B", "type": "web-worker", "version": "1.0.0"}, overwrite=True)
        first = await controller.start(a["id"], wait_for_service="default", timeout=30)
        worker = await api.get_service(first["worker_id"])
        assert await worker.execute(first["id"], "navigator.language") == "fr-FR"
        assert await worker.execute(first["id"], "Intl.DateTimeFormat().resolvedOptions().locale") == "fr-FR"
        assert await worker.execute(first["id"], "[innerWidth, innerHeight]") == [640, 480]
        from PIL import Image

        assert Image.open(io.BytesIO(await worker.take_screenshot(first["id"]))).size == (640, 480)
        await _raises(controller.start(b["id"], wait_for_service="default", timeout=30), "Maximum number of browser sessions (1)")
        await controller.stop(first["id"])
        second = await controller.start(b["id"], wait_for_service="default", timeout=30)
        await controller.stop(second["id"])

        # web-python requirements come from the deployment's Pyodide mirror.
        source = """
import rhizo_mirror_probe
from hypha_rpc import api
api.export({"probe": lambda: rhizo_mirror_probe.VALUE})
"""
        c = await controller.install(
            source=source,
            manifest={"name": "Mirror", "type": "web-python", "version": "1.0.0", "entry_point": "main.py", "requirements": ["rhizo-mirror-probe"]},
            overwrite=True, timeout=60,
        )
        third = await controller.start(c["id"], wait_for_service="default", timeout=60)
        assert await (await api.get_service(f"default@{c['id']}")).probe() == 42
        await controller.stop(third["id"])
        await api.disconnect()
    finally:
        stop()
        mirror_httpd.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(mirror_dir, ignore_errors=True)


async def test_a_killed_browser_fails_its_sessions_clearly_and_the_next_start_relaunches_it(apps_user):
    u = await apps_user()
    app, started = await _start(u, QUICK_START_SOURCE, {"name": "Doomed", "type": "web-worker", "version": "1.0.0"})
    worker = await _worker_of(u, started)
    pid = await worker.get_browser_pid()
    assert isinstance(pid, int) and pid > 0
    os.kill(pid, signal.SIGKILL)

    async def failed():
        while True:
            try:
                await worker.execute(started["id"], "1")
            except Exception as e:  # noqa: BLE001 - the error is what the test reads
                return str(e)
            await asyncio.sleep(0.2)

    err = await asyncio.wait_for(failed(), 15)
    assert "browser process exited" in err or "Session not found" in err, err
    # The app's connection died with the page: the controller stops the instance.
    await wait_until(lambda: _not_running(u, started["id"]), timeout=20)
    again = await u.controller.start(app["id"], wait_for_service="default", timeout=60)
    svc = await u.api.get_service(f"default@{app['id']}")
    assert await svc.add(2, 2) == 4
    assert await worker.get_browser_pid() != pid
    await u.controller.stop(again["id"])
