# Copied from ../shared/seeds/000_7f85864370f4e3f6.txt ("Python Worker Example"), as written there, except that the server URL,
# the token and the workspace come from SEED_SERVER_URL, SEED_TOKEN and SEED_WORKSPACE.
"""Simple Python worker example."""
import os  # (added: the server URL and credentials come from the environment)
import asyncio
import httpx
from hypha_rpc import connect_to_server

# Simple storage for demo (use proper storage in production)
sessions = {}

async def start(config):
    """Start a new worker session."""
    session_id = config["id"]  # Already includes workspace/client_id
    
    print(f"Starting session {session_id} for app {config['app_id']}")
    
    # Get app type from manifest
    app_type = config["manifest"]["type"]
    
    # Connect to artifact manager to access files
    server = await connect_to_server({"server_url": config["server_url"]})
    artifact_manager = await server.get_service("public/artifact-manager")
    
    # Example: Read a configuration file from the application
    try:
        get_url = await artifact_manager.get_file(
            config["artifact_id"], 
            file_path="config.json"
        )
        async with httpx.AsyncClient() as client:
            response = await client.get(get_url)
            if response.status_code == 200:
                app_config = response.json()
                print(f"Loaded app config: {app_config}")
            else:
                print(f"No config file found, using defaults")
                app_config = {}
    except Exception as e:
        print(f"Error loading config: {e}")
        app_config = {}
    
    # Your custom session startup logic here
    session_data = {
        "session_id": session_id,
        "app_id": config["app_id"],
        "workspace": config["workspace"],
        "client_id": config["client_id"],
        "status": "running",
        "app_type": app_type,
        "created_at": "2024-01-01T00:00:00Z",
        "logs": [f"Session {session_id} started"],
        "manifest": config["manifest"],
        "app_config": app_config
    }
    
    # Store session data
    sessions[session_id] = session_data
    
    # Return just the session_id - other data can be retrieved via get_session_info
    return session_id

async def stop(session_id):
    """Stop a worker session."""
    print(f"Stopping session {session_id}")
    
    if session_id in sessions:
        sessions[session_id]["status"] = "stopped"
        sessions[session_id]["logs"].append(f"Session {session_id} stopped")
        print(f"Session {session_id} stopped")
    else:
        print(f"Session {session_id} not found")

async def list_sessions(workspace):
    """List all sessions for a workspace."""
    workspace_sessions = []
    for session_id, session_data in sessions.items():
        if session_data["workspace"] == workspace:
            workspace_sessions.append(session_data)
    return workspace_sessions

async def get_logs(session_id, log_type=None, offset=0, limit=None):
    """Get logs for a session."""
    if session_id not in sessions:
        raise Exception(f"Session {session_id} not found")
    
    logs = sessions[session_id]["logs"]
    
    # Apply offset and limit
    if limit:
        logs = logs[offset:offset+limit]
    else:
        logs = logs[offset:]
    
    if log_type:
        return logs
    else:
        return {"log": logs, "error": []}

async def get_session_info(session_id):
    """Get information about a session."""
    if session_id not in sessions:
        raise Exception(f"Session {session_id} not found")
    return sessions[session_id]

async def prepare_workspace(workspace):
    """Prepare workspace for worker operations."""
    print(f"Preparing workspace {workspace}")

async def close_workspace(workspace):
    """Close workspace and cleanup sessions."""
    print(f"Closing workspace {workspace}")
    
    # Stop all sessions for this workspace
    sessions_to_stop = [
        session_id for session_id, session_data in sessions.items()
        if session_data["workspace"] == workspace
    ]
    
    for session_id in sessions_to_stop:
        await stop(session_id)

# Register the worker
async def register_worker():
    """Register the worker as a service."""
    server = await connect_to_server({
        # The only change to the seed: where the server is and who the worker is.
        "server_url": os.environ["SEED_SERVER_URL"],
        "token": os.environ["SEED_TOKEN"],
        "workspace": os.environ["SEED_WORKSPACE"],
    })
    
    # Register the worker service
    service = await server.register_service({
        "name": "Simple Python Worker",
        "description": "A simple worker implemented with functions",
        "type": "server-app-worker",
        "config": {
            "visibility": "protected",
            "run_in_executor": True,
        },
        "supported_types": ["python-custom", "simple-task"],
        "start": start,
        "stop": stop,
        "list_sessions": list_sessions,
        "get_logs": get_logs,
        "get_session_info": get_session_info,
        "prepare_workspace": prepare_workspace,
        "close_workspace": close_workspace,
    })
    
    print(f"Python worker registered: {service.id}")
    return server

# Start the worker
if __name__ == "__main__":
    async def main():
        server = await register_worker()
        print("Python worker is running...")
        # Keep the connection alive
        await server.serve()
    
    asyncio.run(main())
