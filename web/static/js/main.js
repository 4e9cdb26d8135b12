// Boot and wiring: the tab's one Api and Live, the state every module shares, the
// session, the room list, the open room and its members, each handed the others'
// functions it calls (so no module imports another in a circle); handleFrame, which sends
// every live frame to the module it concerns; and the page-wide keys and tab events.

import { Api } from "./api.js";
import { $ } from "./dom.js";
import { Live } from "./live.js";
import { createMembers } from "./members.js";
import { showBanner, toast } from "./notices.js";
import { createRoomList } from "./roomlist.js";
import { createRoomView } from "./roomview.js";
import { createSession, storedToken } from "./session.js";
import { Outbox } from "./state.js";

const ROOMS_REFRESH_MS = 30000; // at most this often when the tab comes back into view

const state = {
  me: null,
  rooms: new Map(), // room id -> Room (the rooms the user belongs to)
  publicRooms: [], // rooms the user could join
  active: null, // the open Room
  outbox: new Outbox(),
  presence: new Map(), // username -> "online" | "offline"
  typing: new Map(), // room id -> Map(username -> timer)
};

const api = new Api(storedToken, (error) => session.endSession(error.message));
const live = new Live({
  getToken: storedToken,
  onFrame: (frame) => handleFrame(frame),
  onStatus: (status) => showConnection(status),
  onUnauthorized: (reason) => session.endSession(reason),
});
const members = createMembers({ state, api });
const view = createRoomView({
  state,
  api,
  live,
  members,
  renderRooms: () => list.renderRooms(),
  dropRoom: (id, notice) => list.dropRoom(id, notice),
});
const list = createRoomList({ state, api, live, openRoom: view.openRoom, showRoom: view.showRoom });
const session = createSession({
  state,
  api,
  live,
  closeRoom: () => view.showRoom(null),
  forgetRoom: view.forget,
  refreshRooms: list.refreshRooms,
});

function showConnection(status) {
  showBanner(status);
  if (status.state !== "ready") return;
  // A new connection: no room is joined on it yet.
  for (const room of state.rooms.values()) room.joined = room.joining = false;
  list.refreshRooms();
}

// --- live frames ---

function handleFrame(f) {
  const room = typeof f.room === "string" ? state.rooms.get(f.room) : null;
  switch (f.type) {
    case "joined":
      return room && view.onJoined(room, f);
    case "message":
      return room && view.onMessage(room, f);
    case "ack":
      return view.onAck(room, f);
    case "error":
      return onError(f);
    case "read":
      if (room) {
        room.applyMarker(f);
        list.renderRooms();
      }
      return;
    case "typing":
      return room && f.user !== state.me && members.onTyping(room, f.user);
    case "presence":
      return members.onPresence(f.user, f.status);
    case "member_joined":
      return room && members.onMemberJoined(room, f.user);
    case "member_left":
      if (!room) return;
      if (f.user === state.me) return list.dropRoom(room.id, `You left ${room.name}.`);
      return members.onMemberLeft(room, f.user);
    case "room_deleted":
      return room && list.dropRoom(room.id, `The room ${room.name} was deleted.`);
    case "left":
      return room && list.dropRoom(room.id);
    default:
      return;
  }
}

function onError(f) {
  if (view.sendFailed(f)) return;
  const gone = ["room_not_found", "not_a_member", "room_restricted"];
  if (f.room && state.rooms.has(f.room) && gone.includes(f.code)) {
    return list.dropRoom(f.room, f.message);
  }
  if (f.code !== "unauthorized") toast(f.message || f.code);
}

function bind() {
  $("banner-retry").addEventListener("click", () => live.reconnectNow());
  window.addEventListener("online", () => live.reconnectNow());
  // Escape closes an open popover (the invite form) and gives focus back to its button.
  document.addEventListener("keydown", (e) => {
    const open = document.querySelector("details.inline[open]");
    if (e.key === "Escape" && open) {
      open.open = false;
      open.querySelector("summary").focus();
    }
  });
  document.addEventListener("visibilitychange", onReturn);
  window.addEventListener("focus", onReturn);
}

let lastRefresh = 0;

/** Back to this tab: mark what is now seen, and pick up rooms joined or created elsewhere. */
function onReturn() {
  view.markReadSoon();
  if (!state.me || document.visibilityState !== "visible" || Date.now() - lastRefresh < ROOMS_REFRESH_MS) return;
  lastRefresh = Date.now();
  list.refreshRooms();
}

bind();
session.resume();
