"""Baseline: a Flask-SocketIO chat on gevent (its documented production set-up), storing nothing.

Events: join {room} -> joined; send {room, body} -> message {room, seq, body} to the room.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402

from flask import Flask  # noqa: E402
from flask_socketio import SocketIO, emit, join_room  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

app = Flask(__name__)
socketio = SocketIO(app, async_mode="gevent", cors_allowed_origins="*")
seqs: dict[str, int] = {}  # room id -> last seq


@socketio.on("join")
def on_join(data: dict) -> None:
    join_room(data["room"])
    emit("joined", {"room": data["room"]})


@socketio.on("send")
def on_send(data: dict) -> None:
    room = data["room"]
    seqs[room] = seqs.get(room, 0) + 1
    emit("message", {"room": room, "seq": seqs[room], "body": data["body"]}, to=room)


if __name__ == "__main__":
    server = WSGIServer(("127.0.0.1", int(os.environ.get("PORT", "0"))), app, log=None)
    server.start()
    print(f"listening on http://127.0.0.1:{server.address[1]}", flush=True)
    server.serve_forever()
