"""An ASGI wrapper for the fixture servers: refuse requests without a given header."""


def require_header(app, name=b"x-test", value=b"1"):
    """The ASGI ``app`` answering 401 to HTTP requests without header ``name: value``."""

    async def guarded(scope, receive, send):
        if scope["type"] == "http" and (name, value) not in scope["headers"]:
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"missing the required header"})
            return
        await app(scope, receive, send)

    return guarded
