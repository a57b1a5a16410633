// A JavaScript hypha-rpc client that registers a public `js-calc` service with a schema
// function, prints `READY <workspace>` and stays connected until its stdin closes. Started
// by tests/compat/test_mcp.py, which then reaches the service through the MCP endpoints.
import { hyphaWebsocketClient } from "hypha-rpc";
import WebSocket from "ws";

// Node 20 has no global WebSocket; the client reads WebSocket.OPEN from the global.
globalThis.WebSocket = globalThis.WebSocket || WebSocket;

const { connectToServer, schemaFunction } = hyphaWebsocketClient;

const server = await connectToServer({ server_url: process.env.RHIZO_URL });
function add(a, b) {
  return a + b;
}
await server.registerService({
  id: "js-calc",
  config: { visibility: "public" },
  add: schemaFunction(add, {
    name: "add",
    description: "Add two numbers.",
    parameters: {
      type: "object",
      properties: {
        a: { type: "number", description: "first" },
        b: { type: "number", description: "second" },
      },
      required: ["a", "b"],
    },
  }),
});
console.log(`READY ${server.config.workspace}`);
process.stdin.resume();
process.stdin.on("end", async () => {
  await server.disconnect();
  process.exit(0);
});
