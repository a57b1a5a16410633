"""A real a2a-sdk agent for test_mcp_a2a_apps.py: ``python a2a_server.py <port>`` serves
on 127.0.0.1 an agent with one skill ``echo`` that answers ``Echo: <text>``. Every request
must carry the header ``X-Test: 1`` (401 otherwise), so that the proxy's ``headers`` show."""

import sys

import uvicorn
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.apps import A2AStarletteApplication
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import AgentCapabilities, AgentCard, AgentSkill
from a2a.utils import new_agent_text_message
from guard import require_header


class EchoExecutor(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        await event_queue.enqueue_event(new_agent_text_message(f"Echo: {context.get_user_input()}"))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


if __name__ == "__main__":
    port = int(sys.argv[1])
    card = AgentCard(
        name="Echo Agent",
        description="Echoes what it is told",
        url=f"http://127.0.0.1:{port}/",
        version="1.2.3",
        default_input_modes=["text"],
        default_output_modes=["text"],
        capabilities=AgentCapabilities(streaming=True),
        skills=[AgentSkill(id="echo", name="echo", description="Echo the text", tags=["echo"])],
    )
    handler = DefaultRequestHandler(agent_executor=EchoExecutor(), task_store=InMemoryTaskStore())
    app = require_header(A2AStarletteApplication(agent_card=card, http_handler=handler).build())
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
