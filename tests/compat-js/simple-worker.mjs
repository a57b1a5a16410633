// Seed 001's "Simple JavaScript Worker" (plain functions, registered with registerService),
// as written there except that the server URL, token and workspace come from the
// environment (RHIZO_URL, RHIZO_TOKEN, RHIZO_WORKSPACE), so that it joins the workspace of
// the user whose apps it runs. Started by tests/compat/test_server_apps_js.py.
import { hyphaWebsocketClient } from "hypha-rpc";
import WebSocket from "ws";

// Node 20 has no global WebSocket; the client reads WebSocket.OPEN from the global.
globalThis.WebSocket = globalThis.WebSocket || WebSocket;

const { connectToServer } = hyphaWebsocketClient;

// Simple storage for sessions
const sessions = new Map();
const sessionData = new Map();

async function start(config, context = null) {
    const sessionId = config.id;
    console.log(`Starting session ${sessionId} for app ${config.app_id}`);
    const sessionInfo = {
        session_id: sessionId,
        app_id: config.app_id,
        workspace: config.workspace,
        client_id: config.client_id,
        status: "running",
        app_type: config.manifest.type,
        created_at: new Date().toISOString(),
        entry_point: config.entry_point,
        metadata: config.manifest
    };
    sessions.set(sessionId, sessionInfo);
    // Connect to artifact manager
    const server = await connectToServer({server_url: config.server_url});
    const artifactManager = await server.getService("public/artifact-manager");
    // Store session data
    sessionData.set(sessionId, {
        server: server,
        artifactManager: artifactManager,
        logs: [`Session ${sessionId} started`]
    });
    return sessionId;
}

async function stop(sessionId, context = null) {
    if (sessions.has(sessionId)) {
        const sessionInfo = sessions.get(sessionId);
        sessionInfo.status = "stopped";
        const data = sessionData.get(sessionId);
        if (data && data.server) {
            await data.server.disconnect();
        }
        sessionData.delete(sessionId);
        console.log(`Session ${sessionId} stopped`);
    }
}

async function listSessions(workspace, context = null) {
    const workspaceSessions = [];
    for (const [sessionId, sessionInfo] of sessions) {
        if (sessionInfo.workspace === workspace) {
            workspaceSessions.push(sessionInfo);
        }
    }
    return workspaceSessions;
}

async function getSessionInfo(sessionId, context = null) {
    if (!sessions.has(sessionId)) {
        throw new Error(`Session ${sessionId} not found`);
    }
    return sessions.get(sessionId);
}

async function getLogs(sessionId, type = null, offset = 0, limit = null, context = null) {
    if (!sessionData.has(sessionId)) {
        return type ? [] : {log: [], error: []};
    }
    let logs = sessionData.get(sessionId).logs || [];
    if (limit) {
        logs = logs.slice(offset, offset + limit);
    } else {
        logs = logs.slice(offset);
    }
    return type ? logs : {log: logs, error: []};
}

async function prepareWorkspace(workspace, context = null) {
    console.log(`Preparing workspace ${workspace}`);
}

async function closeWorkspace(workspace, context = null) {
    console.log(`Closing workspace ${workspace}`);
}

async function main() {
    try {
        const server = await connectToServer({
            server_url: process.env.RHIZO_URL,
            token: process.env.RHIZO_TOKEN,
            workspace: process.env.RHIZO_WORKSPACE,
        });
        const service = await server.registerService({
            id: `simple-js-worker-${Date.now()}`,
            name: "Simple JavaScript Worker",
            description: "A simple worker implemented with functions",
            type: "server-app-worker",
            config: {
                visibility: "protected",
                run_in_executor: true,
            },
            supported_types: ["javascript-simple", "custom-js-type"],
            start: start,
            stop: stop,
            list_sessions: listSessions,
            get_logs: getLogs,
            get_session_info: getSessionInfo,
            prepare_workspace: prepareWorkspace,
            close_workspace: closeWorkspace,
        });
        console.log(`Simple worker registered: ${service.id}`);
        console.log("Worker is running...");
        process.on('SIGTERM', async () => {
            await server.disconnect();
            process.exit(0);
        });
    } catch (error) {
        console.error("Failed to start worker:", error);
        process.exit(1);
    }
}

main();
