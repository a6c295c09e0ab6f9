"""Connects Python's `websockets` client (which offers permessage-deflate by default) to a
certstream stream and records what it gets.

usage: websockets_client.py URL COUNT WINDOW_BITS OUT.json
WINDOW_BITS empty: websockets' default offer; a number: it asks for server_max_window_bits.
Writes {"extensions": <the agreed Sec-WebSocket-Extensions>, "messages": [<COUNT texts>]}.
"""
import asyncio
import json
import sys

from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

url, want, bits, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


async def main():
    kwargs = {"max_size": 16 << 20}
    if bits:
        kwargs["compression"] = None
        kwargs["extensions"] = [
            ClientPerMessageDeflateFactory(
                server_max_window_bits=int(bits), client_max_window_bits=True
            )
        ]
    got = []
    async with connect(url, **kwargs) as ws:
        agreed = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        while len(got) < want:
            text = await asyncio.wait_for(ws.recv(), 60)
            if not text.startswith('{"message_type":"heartbeat"'):
                got.append(text)
    with open(out, "w") as f:
        json.dump({"extensions": agreed, "messages": got}, f)


asyncio.run(main())
