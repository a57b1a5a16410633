// rhizo's app bootstrap (apps-workers.md §2.3), shared by the window, web-worker and
// web-python templates: merges the page's query string (server_url, client_id, workspace,
// app_id, token) over the app config, connects with the hypha-rpc client the server serves
// at {server_url}/assets/hypha-rpc-websocket.mjs (never a CDN), and gives the app an `api`
// whose `export(obj)` calls `obj.setup()` when present and registers `obj` as the
// service `default`. Expects `__rhizoConfig` and `__rhizoQuery` to be defined.
const __rhizoCfg = Object.assign({}, __rhizoConfig, __rhizoQuery);
const __rhizoServer = String(__rhizoCfg.server_url || "").replace(/\/+$/, "");
globalThis.HYPHA_SERVER_URL = __rhizoServer;
globalThis.HYPHA_WORKSPACE = __rhizoCfg.workspace;
globalThis.HYPHA_CLIENT_ID = __rhizoCfg.client_id;
globalThis.HYPHA_TOKEN = __rhizoCfg.token;
globalThis.HYPHA_APP_ID = __rhizoCfg.app_id;

// Whether `v` is an instance of a class (not a plain object, array, typed array or date).
function __rhizoIsInstance(v) {
  if (v === null || typeof v !== "object" || Array.isArray(v) || ArrayBuffer.isView(v)) return false;
  if (v instanceof Date || v instanceof Blob || v instanceof ArrayBuffer) return false;
  const proto = Object.getPrototypeOf(v);
  return proto !== null && proto !== Object.prototype;
}

// The members of `obj` a service exposes: own properties and, for class instances, the
// methods of its prototype chain (ImJoy plugins often export `new MyPlugin()`); class
// instances among the values become plain objects the same way (up to `depth` levels),
// since the RPC client encodes only plain data, functions and plain objects.
function __rhizoMembers(obj, depth = 3) {
  const out = {};
  for (let p = obj; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const k of Object.getOwnPropertyNames(p)) {
      if (k === "constructor" || k in out) continue;
      const v = obj[k];
      if (typeof v === "function") out[k] = v.bind(obj);
      else if (depth > 0 && __rhizoIsInstance(v)) out[k] = __rhizoMembers(v, depth - 1);
      else out[k] = v;
    }
  }
  return out;
}

async function __rhizoConnect() {
  const { hyphaWebsocketClient } = await import(__rhizoServer + "/assets/hypha-rpc-websocket.mjs");
  const server = await hyphaWebsocketClient.connectToServer({
    server_url: __rhizoServer,
    workspace: __rhizoCfg.workspace,
    client_id: __rhizoCfg.client_id,
    token: __rhizoCfg.token,
  });
  // `members` turns what the app exported into the service's functions (web-python
  // passes its own, for Python objects).
  server.export = async (obj, members = __rhizoMembers) => {
    const svc = members(obj);
    if (typeof svc.setup === "function") await svc.setup();
    const visibility = (__rhizoCfg.service_visibility || "protected");
    await server.registerService({
      ...svc,
      id: "default",
      name: __rhizoCfg.name || "default",
      description: __rhizoCfg.description || "",
      config: { visibility, require_context: false },
    });
    console.info(`service default of app ${__rhizoCfg.app_id} registered`);
  };
  return server;
}
