"""A real FastMCP server for test_mcp_a2a_apps.py: ``python mcp_server.py <port>
<streamable-http|sse> [require-header]`` serves on 127.0.0.1 tools ``add(a, b)``,
``minus(b, a)`` and ``describe`` (JSON result), a resource ``resource://greeting`` and a
prompt ``review(code)``; with ``require-header`` every request needs ``X-Key: k1`` (401
otherwise)."""

import sys

import uvicorn
from mcp.server.fastmcp import FastMCP

mcp = FastMCP("calc")


@mcp.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@mcp.tool()
def minus(b: int, a: int) -> int:
    """b minus a (positional order differs from the alphabetical one)."""
    return b - a


@mcp.tool()
def describe(name: str) -> dict:
    """A structured answer."""
    return {"name": name, "length": len(name)}


@mcp.resource("resource://greeting", name="greeting", description="A greeting", mime_type="text/plain")
def greeting() -> str:
    return "Hello from the MCP resource"


@mcp.prompt(description="Review some code")
def review(code: str) -> str:
    return f"Please review this code:\n{code}"


if __name__ == "__main__":
    port, transport = int(sys.argv[1]), sys.argv[2]
    app = mcp.streamable_http_app() if transport == "streamable-http" else mcp.sse_app()
    if "require-header" in sys.argv[3:]:
        from guard import require_header

        app = require_header(app, b"x-key", b"k1")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
