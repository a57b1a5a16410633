# Copied from ../shared/seeds/001_e9c749117ca56910.txt ("Method 2: Simple Functions"), as written there, except that the server URL,
# the token and the workspace come from SEED_SERVER_URL, SEED_TOKEN and SEED_WORKSPACE.
"""Simple worker using functions only."""
import os  # (added: the server URL and credentials come from the environment)

import asyncio
from hypha_rpc import connect_to_server

# Simple storage for sessions
sessions = {}
session_data = {}

async def start(config, context=None):
    """Start a new worker session."""
    session_id = config["id"]
    
    print(f"Starting session {session_id} for app {config['app_id']}")
    
    # Get app type from manifest
    app_type = config["manifest"]["type"]
    
    # Store session information
    session_info = {
        "session_id": session_id,
        "app_id": config["app_id"],
        "workspace": config["workspace"],
        "client_id": config["client_id"],
        "status": "running",
        "app_type": app_type,
        "created_at": "2024-01-01T00:00:00Z",
        "entry_point": config.get("entry_point"),
        "metadata": config["manifest"]
    }
    
    sessions[session_id] = session_info
    
    # Connect to artifact manager to access files
    server = await connect_to_server({"server_url": config["server_url"]})
    artifact_manager = await server.get_service("public/artifact-manager")
    
    # Store session data
    session_data[session_id] = {
        "server": server,
        "artifact_manager": artifact_manager,
        "logs": [f"Session {session_id} started"]
    }
    
    return session_id

async def stop(session_id, context=None):
    """Stop a worker session."""
    if session_id in sessions:
        sessions[session_id]["status"] = "stopped"
        # Clean up resources
        if session_id in session_data:
            data = session_data[session_id]
            if "server" in data:
                await data["server"].disconnect()
        session_data.pop(session_id, None)
        print(f"Session {session_id} stopped")

async def list_sessions(workspace, context=None):
    """List all sessions for a workspace."""
    return [
        session for session in sessions.values()
        if session["workspace"] == workspace
    ]

async def get_session_info(session_id, context=None):
    """Get information about a session."""
    if session_id not in sessions:
        raise Exception(f"Session {session_id} not found")
    return sessions[session_id]

async def get_logs(session_id, type=None, offset=0, limit=None, context=None):
    """Get logs for a session."""
    if session_id not in session_data:
        return [] if type else {"log": [], "error": []}
    
    logs = session_data[session_id].get("logs", [])
    
    # Apply offset and limit
    if limit:
        logs = logs[offset:offset + limit]
    else:
        logs = logs[offset:]
    
    return logs if type else {"log": logs, "error": []}

async def prepare_workspace(workspace, context=None):
    """Prepare workspace for worker operations."""
    print(f"Preparing workspace {workspace}")

async def close_workspace(workspace, context=None):
    """Close workspace and cleanup sessions."""
    print(f"Closing workspace {workspace}")
    sessions_to_stop = [
        session_id for session_id, session in sessions.items()
        if session["workspace"] == workspace
    ]
    for session_id in sessions_to_stop:
        await stop(session_id, context=context)

# Register the worker
async def main():
    server = await connect_to_server({
        # The only change to the seed: where the server is and who the worker is.
        "server_url": os.environ["SEED_SERVER_URL"],
        "token": os.environ["SEED_TOKEN"],
        "workspace": os.environ["SEED_WORKSPACE"],
    })
    
    # Register the worker service
    service = await server.register_service({
        "id": f"simple-worker-{id(start)}",
        "name": "Simple Worker",
        "description": "A simple worker implemented with functions",
        "type": "server-app-worker",
        "config": {
            "visibility": "protected",
            "run_in_executor": True,
        },
        "supported_types": ["simple-task", "custom-type"],
        "start": start,
        "stop": stop,
        "list_sessions": list_sessions,
        "get_logs": get_logs,
        "get_session_info": get_session_info,
        "prepare_workspace": prepare_workspace,
        "close_workspace": close_workspace,
    })
    
    print(f"Simple worker registered: {service.id}")
    await server.serve()

if __name__ == "__main__":
    asyncio.run(main())
