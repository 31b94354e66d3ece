"""The load client of the live-stream bench: many SSE connections from one process.

`python -m bench.sse_client HOST PORT N PREFIX` opens N `GET /inbox/stream` connections,
each as a distinct signed-in doctor (`<PREFIX><i>`, as its token's subject and, for the
baseline that has no auth, in `?user=`), on raw asyncio sockets (a protocol
object and a few bytes of buffer per connection: the client must not be what limits).
It prints one JSON line once they are open, then answers commands on stdin:
`collect` prints {notification id: receipt time (epoch s)} received since the last
collect; `quit` closes every connection and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from tests.support import token

OPENING_AT_ONCE = 200


class StreamClient(asyncio.Protocol):
    """One SSE connection: notes when it is open and when each event id arrives."""

    def __init__(self, request: bytes, received: dict[str, float]) -> None:
        self.request = request
        self.received = received
        self.opened: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.closed = False
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        data = self._tail + data
        lines = data.split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            if line.startswith(b"id: "):
                self.received[line[4:].strip().decode()] = now
            elif not self.opened.done():
                if line.startswith(b"HTTP/1.1 ") and not line.startswith(b"HTTP/1.1 200"):
                    self.opened.set_result(line[9:12].decode())
                elif line.startswith(b": connected"):
                    self.opened.set_result("ok")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.opened.done():
            self.opened.set_result("closed")


async def open_all(
    host: str, port: int, n: int, prefix: str, received: dict[str, float]
) -> tuple[dict[int, asyncio.Transport], dict[str, int]]:
    """Open `n` streams, at most OPENING_AT_ONCE at a time: the open ones by doctor
    number, and the failures by reason (an HTTP status, "timeout", "refused"...)."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(OPENING_AT_ONCE)
    transports: dict[int, asyncio.Transport] = {}
    failed: dict[str, int] = {}

    async def one(i: int) -> None:
        bearer = token(f"{prefix}{i}", "doctor", ttl_s=3600)
        request = (
            f"GET /inbox/stream?user={prefix}{i} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {bearer}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        async with gate:
            try:
                transport, proto = await loop.create_connection(
                    lambda: StreamClient(request, received), host, port
                )
            except OSError as exc:
                failed[type(exc).__name__] = failed.get(type(exc).__name__, 0) + 1
                return
            try:
                outcome = await asyncio.wait_for(proto.opened, 60)
            except TimeoutError:
                outcome = "timeout"
            if outcome == "ok":
                transports[i] = transport
            else:
                failed[outcome] = failed.get(outcome, 0) + 1
                transport.close()

    await asyncio.gather(*(one(i) for i in range(n)))
    return transports, failed


async def main(host: str, port: int, n: int, prefix: str) -> None:
    received: dict[str, float] = {}
    started = time.perf_counter()
    transports, failed = await open_all(host, port, n, prefix, received)
    report = {
        "connected": len(transports),
        "failed": failed,
        "seconds": round(time.perf_counter() - started, 2),
        "open": sorted(transports),
    }
    print(json.dumps(report), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        command = (await reader.readline()).decode().strip()
        if command == "collect":
            got = dict(received)
            received.clear()
            alive = sum(1 for t in transports.values() if not t.is_closing())
            print(json.dumps({"received": got, "open": alive}), flush=True)
        else:  # quit, or stdin closed
            for transport in transports.values():
                transport.close()
            await asyncio.sleep(0.5)
            return


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
