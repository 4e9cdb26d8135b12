// Baseline: a plain Node `ws` chat that fans out to a room's members and stores nothing.
//
// The same tiny protocol as bench/baselines/websockets_chat.py. Frames:
// {"type": "join", "room"} and {"type": "send", "room", "body"} in;
// {"type": "joined", "room"} back, and {"type": "message", "room", "seq", "body"} out to
// every member of the room. Listens on 127.0.0.1:$PORT.
"use strict";

const { WebSocketServer } = require("ws");

const rooms = new Map(); // room id -> Set of connections
const seqs = new Map(); // room id -> last seq

const port = Number(process.env.PORT || 0);
// perMessageDeflate off, as the Python servers run without compression.
const server = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false });

server.on("connection", (ws) => {
  const joined = new Set();
  ws.on("message", (data, isBinary) => {
    let frame;
    try {
      frame = JSON.parse(isBinary ? data : data.toString());
    } catch {
      ws.close(1003, "not JSON");
      return;
    }
    const room = frame.room;
    if (frame.type === "join") {
      if (!rooms.has(room)) rooms.set(room, new Set());
      rooms.get(room).add(ws);
      joined.add(room);
      ws.send(JSON.stringify({ type: "joined", room }));
    } else if (frame.type === "send" && joined.has(room)) {
      const seq = (seqs.get(room) || 0) + 1;
      seqs.set(room, seq);
      // Encoded once for the whole room, as websockets' broadcast() does.
      const out = Buffer.from(JSON.stringify({ type: "message", room, seq, body: frame.body }));
      for (const member of rooms.get(room)) {
        if (member.readyState === member.OPEN) member.send(out, { binary: false });
      }
    }
  });
  ws.on("close", () => {
    for (const room of joined) rooms.get(room).delete(ws);
  });
  ws.on("error", () => {}); // a reset connection just closes
});

server.on("listening", () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});

// The bench stops the server with SIGTERM; exit at once like the Python baselines.
process.on("SIGTERM", () => process.exit(0));
