"""A bound on request bodies, enforced as they arrive and before any route reads them.

A body announced (Content-Length) or sent (chunked) over the limit is answered 413: from
the moment the limit is passed, the rest of it is read and dropped, so the server never
holds more than the limit of one request.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidings.server.http.errors import error_response


class BodyLimit:
    """ASGI middleware: the request's body, read up to `max_bytes`, is handed on whole."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 413 for a body over the limit; pass any other request on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        announced = dict(scope["headers"]).get(b"content-length", b"0")
        if not announced.isdigit() or int(announced) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: Message | None = {"type": "http.request", "body": b"".join(chunks)}

        async def replay() -> Message:
            nonlocal body
            if body is None:
                return await receive()  # later reads wait for the client to go away
            message, body = body, None
            return message

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 413 once the rest of the body is read and dropped: a client that sends
        its whole body before it reads the answer gets it, and memory holds none of it."""
        message: Message = {"more_body": True}
        while message.get("more_body", False):
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
        response = error_response(
            413,
            "request_too_large",
            f"the request body is over {self.max_bytes} bytes, this server's limit; send "
            f"fewer records per request, or start the server with a larger "
            f"--max-http-body-bytes",
        )
        await response(scope, receive, send)
