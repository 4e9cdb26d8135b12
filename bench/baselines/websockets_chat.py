"""Baseline: a plain `websockets` chat that fans out with broadcast() and stores nothing.

Frames: {"type": "join", "room"} and {"type": "send", "room", "body"} in;
{"type": "message", "room", "seq", "body"} out to every member of the room.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from websockets.asyncio.server import broadcast, serve

rooms: dict[str, set] = {}  # room id -> connections
seqs: dict[str, int] = {}  # room id -> last seq


async def handler(ws) -> None:  # type: ignore[no-untyped-def]
    joined: set[str] = set()
    try:
        async for raw in ws:
            frame = json.loads(raw)
            room = frame.get("room")
            if frame.get("type") == "join":
                rooms.setdefault(room, set()).add(ws)
                joined.add(room)
                await ws.send(json.dumps({"type": "joined", "room": room}))
            elif frame.get("type") == "send" and room in joined:
                seqs[room] = seqs.get(room, 0) + 1
                out = json.dumps(
                    {"type": "message", "room": room, "seq": seqs[room], "body": frame["body"]}
                )
                broadcast(rooms[room], out)
    finally:
        for room in joined:
            rooms[room].discard(ws)


async def main() -> None:
    port = int(os.environ.get("PORT", "0"))
    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=None) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"listening on http://127.0.0.1:{bound}", flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
