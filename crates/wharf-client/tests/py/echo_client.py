"""A client on the `websockets` library, for interoperability tests of wharf's server.

Usage: echo_client.py URL. Connects (offering permessage-deflate, the library's default),
prints the server's Sec-WebSocket-Extensions answer, then sends text and binary messages of
several sizes and checks each comes back unchanged; prints "ok" at the end.
"""

import asyncio
import sys

from websockets.asyncio.client import connect


async def main(url):
    async with connect(url, max_size=None) as ws:
        print(ws.response.headers.get("Sec-WebSocket-Extensions", "-"), flush=True)
        for size in (16, 1000, 100_000):
            text = ("wharf é中 " * size)[:size]
            await ws.send(text)
            assert await ws.recv() == text, f"text of {size}"
            data = (bytes(range(256)) * (size // 256 + 1))[:size]
            await ws.send(data)
            assert await ws.recv() == data, f"binary of {size}"
        print("ok", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
