"""The limit for a Python HTTP server: a bare ASGI app that reads the body and answers.

No framework, no routing, no parsing: whatever uvicorn (uvloop + httptools) costs per
request is all this costs. It reads the whole request body, as an infer endpoint must, and
answers every path with a fixed small JSON body. Serve it with
`uvicorn benchmarks.peers.raw_asgi:app --loop uvloop --http httptools`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]

BODY = b'{"hello":"world"}'
_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))],
}
_BODY = {"type": "http.response.body", "body": BODY}


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """The ASGI application."""
    if scope["type"] == "lifespan":
        await receive()  # lifespan.startup
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = bytearray()  # the whole body, as a real endpoint would hold it
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await send(_START)
    await send(_BODY)
