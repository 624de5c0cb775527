"""A TCP proxy for partition tests inside one host."""

from __future__ import annotations

import asyncio


class ReplyDropper:
    """A TCP proxy to Redis that can stop passing Redis's replies back: the commands still
    run, and their callers time out (a partition after the command went out)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.drop = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def reset(self) -> None:
        """Close every proxied connection (their clients reconnect)."""
        for writer in self._writers:
            writer.close()
        self._writers = []

    async def close(self) -> None:
        await self.reset()
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [writer, up_writer]
        await asyncio.gather(
            self._pipe(reader, up_writer, replies=False),
            self._pipe(up_reader, writer, replies=True),
            return_exceptions=True,
        )

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, replies: bool
    ) -> None:
        while data := await source.read(65536):
            if not (replies and self.drop):
                sink.write(data)
                await sink.drain()
