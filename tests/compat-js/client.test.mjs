// Compatibility of rhizo with the real hypha-rpc npm client (protocol.md §1–§5).
// Run by tests/compat/test_js_client.py, which starts the server, registers a Python
// service and passes: RHIZO_URL (server URL) and PY_SERVICE (full id of the Python
// service with `echo(x)` and `call_js(service_id, x)`, which calls `double(x)` on a
// JavaScript service and returns the result).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { hyphaWebsocketClient } from "hypha-rpc";
import WebSocket from "ws";

// Node 20 has no global WebSocket; the client reads WebSocket.OPEN from the global.
globalThis.WebSocket = globalThis.WebSocket || WebSocket;

const url = process.env.RHIZO_URL;
const pyService = process.env.PY_SERVICE;
assert.ok(url, "RHIZO_URL must be set");

const clients = [];
async function connect(config = {}) {
  const c = await hyphaWebsocketClient.connectToServer({ server_url: url, ...config });
  clients.push(c);
  return c;
}

after(async () => {
  for (const c of clients.reverse()) {
    try {
      await c.disconnect();
    } catch {
      // teardown must not mask a result
    }
  }
});

test("connects anonymously into its own workspace", async () => {
  const c = await connect();
  assert.match(c.config.workspace, /^ws-user-anonymouz-/);
  assert.ok(c.config.client_id);
  const other = await connect();
  assert.notEqual(other.config.workspace, c.config.workspace);
});

test("a public service is callable from another workspace", async () => {
  const provider = await connect();
  await provider.registerService({
    id: "js-calc",
    config: { visibility: "public" },
    add: (a, b) => a + b,
    greet: async (name) => `hello ${name}`,
  });
  const caller = await connect();
  const svc = await caller.getService(`${provider.config.workspace}/js-calc`);
  assert.equal(await svc.add(2, 3), 5);
  assert.equal(await svc.greet("rhizo"), "hello rhizo");
  const listed = await provider.listServices();
  assert.ok(listed.some((s) => s.id.endsWith(":js-calc")), JSON.stringify(listed));
});

test("a protected service is refused to other workspaces", async () => {
  const provider = await connect();
  await provider.registerService({ id: "js-secret", config: { visibility: "protected" }, f: () => 1 });
  const outsider = await connect();
  await assert.rejects(outsider.getService(`${provider.config.workspace}/js-secret`));
  const own = await provider.getService("js-secret");
  assert.equal(await own.f(), 1);
});

test("callbacks passed as arguments are called back", async () => {
  const provider = await connect();
  await provider.registerService({
    id: "js-cb",
    config: { visibility: "public" },
    twice: async (cb, x) => (await cb(x)) + (await cb(x)),
  });
  const caller = await connect();
  const svc = await caller.getService(`${provider.config.workspace}/js-cb`);
  assert.equal(await svc.twice((v) => v * 10, 4), 80);
});

test("a token lets a second client into the workspace", async () => {
  const owner = await connect();
  const token = await owner.generateToken({ permission: "read_write" });
  const member = await connect({ workspace: owner.config.workspace, token });
  assert.equal(member.config.workspace, owner.config.workspace);
  await owner.registerService({ id: "js-private", f: () => "inside" });
  const svc = await member.getService("js-private");
  assert.equal(await svc.f(), "inside");
});

test("payloads above 1 MiB travel in chunks between JavaScript clients", async () => {
  const provider = await connect();
  await provider.registerService({
    id: "js-bytes",
    config: { visibility: "public" },
    sum: (data) => data.reduce((acc, b) => acc + b, 0),
    make: (n) => new Uint8Array(n).fill(7),
  });
  const caller = await connect();
  const svc = await caller.getService(`${provider.config.workspace}/js-bytes`);
  const big = new Uint8Array(2 * 1024 * 1024).fill(3);
  assert.equal(await svc.sum(big), 3 * big.length);
  const back = await svc.make(1536 * 1024);
  assert.equal(back.length, 1536 * 1024);
  assert.equal(back[back.length - 1], 7);
  // The provider's upload of that result ends with a `process` call whose own reply
  // arrives just after the caller has the result; let it land before the test ends
  // (the client behaves the same against the reference server).
  await new Promise((resolve) => setTimeout(resolve, 300));
});

test("JavaScript and Python clients call each other", { skip: !pyService }, async () => {
  const js = await connect();
  await js.registerService({ id: "js-double", config: { visibility: "public" }, double: (x) => x * 2 });
  const py = await js.getService(pyService);
  assert.deepEqual(await py.echo({ a: [1, 2, "three"] }), { a: [1, 2, "three"] });
  assert.equal(await py.call_js(`${js.config.workspace}/js-double`, 21), 42);
  // Python's snake_case members, seen in camelCase as JavaScript code expects.
  const camel = await js.getService(pyService, { case_conversion: "camel" });
  assert.equal(await camel.callJs(`${js.config.workspace}/js-double`, 5), 10);
});

test("the HTTP streaming transport talks to WebSocket clients", async () => {
  const wsClient = await connect();
  await wsClient.registerService({ id: "js-ws-side", config: { visibility: "public" }, up: (s) => s.toUpperCase() });
  const httpClient = await connect({ transport: "http" });
  await httpClient.registerService({ id: "js-http-side", config: { visibility: "public" }, neg: (x) => -x });
  const fromHttp = await httpClient.getService(`${wsClient.config.workspace}/js-ws-side`);
  assert.equal(await fromHttp.up("rhizo"), "RHIZO");
  const fromWs = await wsClient.getService(`${httpClient.config.workspace}/js-http-side`);
  assert.equal(await fromWs.neg(5), -5);
});

test("events reach subscribed clients of the workspace", async () => {
  const owner = await connect();
  const token = await owner.generateToken({ permission: "read_write" });
  const member = await connect({ workspace: owner.config.workspace, token });
  await member.subscribe(["js-event", "client_disconnected"]);
  const got = [];
  member.on("js-event", (msg) => got.push(msg.data));
  const gone = new Promise((resolve) => member.on("client_disconnected", (msg) => resolve(msg.data)));
  await owner.emit({ type: "js-event", to: "*", data: { n: 1 } });
  for (let i = 0; i < 50 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(got, [{ n: 1 }]);
  const leaving = await connect({ workspace: owner.config.workspace, token });
  const leavingId = leaving.config.client_id;
  await leaving.disconnect();
  const data = await gone;
  assert.equal(data.id, leavingId);
});

test("async generators stream their items", async () => {
  const provider = await connect();
  await provider.registerService({
    id: "js-gen",
    config: { visibility: "public" },
    count: async function* (n) {
      for (let i = 0; i < n; i++) yield i;
    },
  });
  const caller = await connect();
  const svc = await caller.getService(`${provider.config.workspace}/js-gen`);
  const items = [];
  for await (const x of await svc.count(4)) items.push(x);
  assert.deepEqual(items, [0, 1, 2, 3]);
});

test("workspace methods work from JavaScript", async () => {
  const c = await connect();
  await c.setEnv("COLOR", "blue");
  assert.equal(await c.getEnv("COLOR"), "blue");
  const status = await c.checkStatus();
  assert.equal(status.status, "ready");
  await c.logEvent("js_event", { x: 1 });
  const events = await c.getEvents("js_event");
  assert.equal(events.length, 1);
  assert.deepEqual(events[0].data, { x: 1 });
  const info = await c.getWorkspaceInfo();
  assert.equal(info.id, c.config.workspace);
  assert.equal(await c.ping(c.config.client_id), "pong");
});

test("a JavaScript service is callable over plain HTTP", async () => {
  const provider = await connect();
  await provider.registerService({ id: "js-http", config: { visibility: "public" }, add: (a, b) => a + b });
  const base = `${url}/${provider.config.workspace}/services/js-http`;
  const r = await fetch(`${base}/add?a=2&b=40`);
  assert.equal(r.status, 200, await r.clone().text());
  assert.equal(await r.json(), 42);
  const post = await fetch(`${base}/add`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ a: 1, b: 2 }),
  });
  assert.equal(await post.json(), 3);
});

test("unregistering removes the service from listings", async () => {
  const c = await connect();
  await c.registerService({ id: "js-temp", f: () => 1 });
  assert.ok((await c.listServices()).some((s) => s.id.endsWith(":js-temp")));
  await c.unregisterService("js-temp");
  assert.ok(!(await c.listServices()).some((s) => s.id.endsWith(":js-temp")));
});

test("a manager reply above 1 MiB reaches a JavaScript client", async () => {
  const c = await connect();
  for (let i = 0; i < 900; i++) {
    await c.registerService({ id: `svc-${i}`, description: "d".repeat(1000), f: () => i });
  }
  const listed = await c.listServices();
  assert.equal(listed.filter((s) => s.id.includes(":svc-")).length, 900);
});

test("a JavaScript `functions` service is served as an HTTP app", async () => {
  const provider = await connect();
  await provider.registerService({
    id: "js-site",
    type: "functions",
    config: { visibility: "public" },
    index: () => ({ status: 200, headers: { "Content-Type": "text/plain" }, body: "js index" }),
    hello: { world: (event) => ({ status: 201, body: `${event.method} ${event.query_string}` }) },
  });
  const base = `${url}/${provider.config.workspace}/apps/js-site`;
  let r = await fetch(`${base}/`);
  assert.equal(r.status, 200);
  assert.equal(await r.text(), "js index");
  r = await fetch(`${base}/hello/world?a=1`);
  assert.equal(r.status, 201);
  assert.equal(await r.text(), "GET a=1");
});
