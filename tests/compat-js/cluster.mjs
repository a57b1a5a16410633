// The real hypha-rpc npm client on one node of a rhizo cluster, driven by
// tests/compat/test_cluster.py (issue 10: npm clients across nodes). Connects to RHIZO_URL
// (the balancer, pinned to a node other than the Python client's), registers `js-cross`
// with `triple(x)`, then calls the Python service PY_SERVICE on the other node: `double(x)`
// `call_back(f)` (Python calls the JavaScript callback `f` across the nodes) and
// `whoami(text)` (the caller's address as Python sees it). Prints
// `READY <service id>` and `RESULT <json>` lines, then stays connected until stdin closes
// (so that Python can call `triple`), or 60 s.
import { hyphaWebsocketClient } from "hypha-rpc";
import WebSocket from "ws";

globalThis.WebSocket = globalThis.WebSocket || WebSocket;

const url = process.env.RHIZO_URL;
const pyService = process.env.PY_SERVICE;
const client = await hyphaWebsocketClient.connectToServer({ server_url: url });
const svc = await client.registerService({
  id: "js-cross",
  config: { visibility: "public" },
  triple: (x) => x * 3,
});
console.log(`READY ${svc.id}`);
const result = {};
try {
  const py = await client.getService(pyService);
  result.double = await py.double(21);
  result.callback = await py.call_back((x) => x * 2);
  result.whoami = await py.whoami("hello");
} catch (e) {
  result.error = String(e);
}
console.log(`RESULT ${JSON.stringify(result)}`);
const done = new Promise((resolve) => {
  process.stdin.on("end", resolve);
  process.stdin.on("close", resolve);
  process.stdin.resume();
  setTimeout(resolve, 60000);
});
await done;
await client.disconnect();
process.exit(0);
