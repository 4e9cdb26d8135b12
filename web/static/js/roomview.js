// The open room: showing it, its messages (through timeline.js) and the sends not yet
// acked (queued, sending, failed with Retry and Discard), the compose box and its keys,
// the read marker, the room's own buttons (back, invite, leave, delete), and the frames
// that change its messages. Its members and typing line are members.js's.

import { $, bodyNodes, el, formatTime, mentions, randomId } from "./dom.js";
import { announce, formError, toast } from "./notices.js";
import { Timeline } from "./timeline.js";

const TYPING_SEND_MS = 2000; // at most one typing frame per this, while typing
const READ_DEBOUNCE_MS = 300;

/** The room view's controls, bound to its buttons and forms. `renderRooms` and `dropRoom` are the room list's. */
export function createRoomView({ state, api, live, members, renderRooms, dropRoom }) {
  const timeline = new Timeline({
    scroller: $("scroller"),
    list: $("messages"),
    pendingList: $("pending"),
    olderButton: $("load-older"),
    startNote: $("history-start"),
    jumpButton: $("jump"),
    renderMessage,
    renderPending,
    loadOlder,
    onSeen: () => markReadSoon(),
  });

  function openRoom(id) {
    const room = state.rooms.get(id);
    if (!room) return;
    room.divider = room.unread > 0 ? room.firstUnreadSeq(state.me) : null;
    showRoom(room);
    $("compose").focus();
  }

  function showRoom(room, notice) {
    state.active = room;
    $("room-pane").hidden = !room;
    $("no-room").hidden = !!room;
    $("app-screen").dataset.view = room ? "room" : "list";
    const noRoom = $("no-room").querySelector("p");
    noRoom.textContent = notice || "Pick a room on the left, or create one.";
    renderRooms();
    if (!room) {
      timeline.room = null;
      return;
    }
    $("room-title").textContent = room.name;
    $("room-id").textContent = room.id;
    const owner = room.owner === state.me;
    $("invite-panel").hidden = !owner;
    $("delete-room").hidden = !owner;
    $("invite-panel").open = false;
    formError($("invite-form"), "");
    members.renderMembers();
    members.renderTyping();
    timeline.show(room, room.divider);
    timeline.renderOutbox(state.outbox.forRoom(room.id));
  }

  /** The session ended: no room, and nothing of this user stays in the page, not even hidden. */
  function forget() {
    showRoom(null);
    $("messages").replaceChildren();
    $("pending").replaceChildren();
    members.clear();
  }

  async function loadOlder(room) {
    const first = room.msgs.length ? room.msgs[0].seq : (room.maxSeq ?? 0) + 1;
    try {
      const page = await api.older(room.id, first);
      room.hasOlder = page.has_more;
      return room.prepend(page.messages);
    } catch (error) {
      toast(error.message);
      return 0;
    }
  }

  function renderMessage(msg) {
    const room = state.rooms.get(msg.room) || state.active;
    const mine = msg.user === state.me;
    const awaiting = mine && msg.client_msg_id && room && room.awaitingAck.has(msg.client_msg_id);
    const mention = !mine && mentions(msg.body, state.me);
    const time = el("time", { datetime: msg.ts, title: new Date(msg.ts).toLocaleString() }, formatTime(msg.ts));
    return el(
      "li",
      {
        class: `msg${mine ? " mine" : ""}${mention ? " mention" : ""}`,
        dataset: { seq: msg.seq, state: mine ? (awaiting ? "pending" : "sent") : "received" },
      },
      room && room.divider === msg.seq
        ? el("div", { class: "divider", role: "separator" }, el("span", {}, "New messages"))
        : null,
      el(
        "div",
        { class: "meta" },
        el("span", { class: "author" }, msg.user),
        " ",
        time,
        mine && awaiting ? el("span", { class: "status" }, "sending…") : null,
        mine && !awaiting
          ? el("span", { class: "status", title: "sent" }, "✓", el("span", { class: "visually-hidden" }, " sent"))
          : null,
      ),
      el("div", { class: "body" }, bodyNodes(msg.body, state.me)),
    );
  }

  function renderPending(entry) {
    const label = { queued: "queued: sends when the connection is back", sending: "sending…", failed: "not sent" }[entry.state];
    return el(
      "li",
      { class: "msg mine pending", dataset: { cmid: entry.id, state: entry.state } },
      el(
        "div",
        { class: "meta" },
        el("span", { class: "author" }, state.me),
        " ",
        el("span", { class: "status" }, label),
        entry.state === "failed" && entry.error ? el("span", { class: "error" }, ` ${entry.error}`) : null,
        entry.state === "failed"
          ? el("button", { type: "button", class: "link retry", onclick: () => retry(entry.id) }, "Retry")
          : null,
        entry.state === "failed"
          ? el("button", { type: "button", class: "link discard", onclick: () => discard(entry.id) }, "Discard")
          : null,
      ),
      el("div", { class: "body" }, entry.body),
    );
  }

  let readTimer = null;

  /** The newest message is on screen: move the read marker there (debounced). */
  function markReadSoon() {
    const room = state.active;
    if (!room || document.visibilityState !== "visible" || !timeline.seesNewest()) return;
    const newest = room.newestSeq();
    if (!newest || (newest <= room.lastRead && room.unread <= 0)) return;
    clearTimeout(readTimer);
    readTimer = setTimeout(() => {
      if (state.active !== room || !timeline.seesNewest()) return;
      live.send({ type: "read", room: room.id, seq: room.newestSeq() });
    }, READ_DEBOUNCE_MS);
  }

  // --- sending ---

  let lastTypingSent = 0;

  function send(body) {
    const room = state.active;
    if (!room || !body.trim()) return false;
    const entry = { id: randomId(), room: room.id, body, state: "queued", error: "" };
    state.outbox.add(entry);
    transmit(entry);
    timeline.toNewest();
    timeline.renderOutbox(state.outbox.forRoom(room.id));
    lastTypingSent = 0;
    return true;
  }

  /** Send (or send again, with the same client_msg_id) if the room is joined on a live connection. */
  function transmit(entry) {
    const room = state.rooms.get(entry.room);
    const frame = { type: "send", room: entry.room, body: entry.body, client_msg_id: entry.id };
    entry.state = room && room.joined && live.send(frame) ? "sending" : "queued";
    entry.error = "";
  }

  function retry(id) {
    const entry = state.outbox.get(id);
    if (!entry) return;
    transmit(entry);
    if (state.active && state.active.id === entry.room) timeline.renderOutbox(state.outbox.forRoom(entry.room));
  }

  function discard(id) {
    const entry = state.outbox.get(id);
    if (!entry) return;
    state.outbox.delete(id);
    if (state.active && state.active.id === entry.room) timeline.renderOutbox(state.outbox.forRoom(entry.room));
  }

  function onComposeKey(event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  }

  function onComposeInput() {
    const room = state.active;
    const now = Date.now();
    if (room && room.joined && $("compose").value && now - lastTypingSent > TYPING_SEND_MS) {
      if (live.send({ type: "typing", room: room.id })) lastTypingSent = now;
    }
  }

  // --- live frames about rooms (main.js's handleFrame picks the room) ---

  function onJoined(room, f) {
    const first = room.maxSeq === null;
    room.joined = true;
    room.joining = false;
    room.applyMarker(f);
    const history = Array.isArray(f.history) ? f.history : [];
    if (f.truncated || first) {
      // A gap we will not replay: start over from this block; older pages come over REST.
      room.reset(history);
      room.hasOlder = history.length ? history[0].seq > 1 : (f.last_seq || 0) > 0;
    } else {
      for (const m of history) room.insert(m);
    }
    room.maxSeq = Math.max(room.maxSeq ?? 0, f.last_seq || 0);
    for (const m of history) {
      if (m.user === state.me && m.client_msg_id && state.outbox.get(m.client_msg_id)) {
        state.outbox.delete(m.client_msg_id); // stored before the connection dropped
      }
    }
    room.members = new Map((f.members || []).map((m) => [m.username, m.status]));
    for (const m of f.members || []) state.presence.set(m.username, m.status);
    room.memberCount = f.member_count || room.members.size;
    for (const entry of state.outbox.forRoom(room.id)) if (entry.state !== "failed") transmit(entry);
    if (state.active === room) {
      if (first) {
        room.divider = room.unread > 0 ? room.firstUnreadSeq(state.me) : null;
        timeline.show(room, room.divider);
      } else timeline.refresh();
      timeline.renderOutbox(state.outbox.forRoom(room.id));
      members.renderMembers();
    }
    renderRooms();
    markReadSoon();
  }

  function onMessage(room, f) {
    // Whether the reader is at the newest message, asked before this one is added.
    const looking = state.active === room && document.visibilityState === "visible" && timeline.seesNewest();
    const i = room.insert(f);
    if (i < 0) return; // had it already
    const mine = f.user === state.me;
    if (mine && f.client_msg_id && state.outbox.delete(f.client_msg_id)) room.awaitingAck.add(f.client_msg_id);
    if (!mine) {
      // Seen as it arrives: the read marker follows at once, so do not count it meanwhile.
      if (!looking) room.countUnread(f, state.me);
      members.stopTyping(room, f.user);
    }
    if (state.active === room) {
      if (!mine && !looking && room.divider === null) room.divider = f.seq;
      timeline.inserted(i);
      if (mine) timeline.renderOutbox(state.outbox.forRoom(room.id));
      if (!mine) announce(`${f.user}: ${f.body}`);
    }
    renderRooms();
    markReadSoon();
  }

  function onAck(room, f) {
    if (!f.client_msg_id) return;
    state.outbox.delete(f.client_msg_id);
    if (!room) return;
    room.awaitingAck.delete(f.client_msg_id);
    if (state.active === room) {
      timeline.update(f.seq);
      timeline.renderOutbox(state.outbox.forRoom(room.id));
    }
  }

  /** An `error` frame about one of our sends marks it failed, with the reason. False if it is about none. */
  function sendFailed(f) {
    const entry = f.client_msg_id ? state.outbox.get(f.client_msg_id) : null;
    if (!entry) return false;
    entry.state = "failed";
    entry.error = f.message || f.code;
    if (state.active && state.active.id === entry.room) timeline.renderOutbox(state.outbox.forRoom(entry.room));
    return true;
  }

  $("back").addEventListener("click", () => showRoom(null));
  $("invite-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const room = state.active;
    const name = $("invite-name").value.trim();
    if (!room || !name) return;
    try {
      await api.invite(room.id, name);
      $("invite-name").value = "";
      formError(e.target, "");
      $("invite-panel").open = false;
      toast(`Invited ${name}: they can now join with the ID ${room.id}.`);
    } catch (error) {
      formError(e.target, error.message);
    }
  });
  $("leave-room").addEventListener("click", async () => {
    const room = state.active;
    if (!room) return;
    try {
      await api.leave(room.id);
      dropRoom(room.id, `You left ${room.name}.`);
    } catch (error) {
      toast(error.message);
    }
  });
  $("delete-room").addEventListener("click", async () => {
    const room = state.active;
    if (!room || !window.confirm(`Delete the room "${room.name}" and all its messages? This cannot be undone.`)) return;
    try {
      await api.deleteRoom(room.id);
      dropRoom(room.id, `The room ${room.name} was deleted.`);
    } catch (error) {
      toast(error.message);
    }
  });
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const box = $("compose");
    if (send(box.value)) box.value = "";
  });
  $("compose").addEventListener("keydown", onComposeKey);
  $("compose").addEventListener("input", onComposeInput);

  return {
    openRoom,
    showRoom,
    forget,
    markReadSoon,
    onJoined,
    onMessage,
    onAck,
    sendFailed,
  };
}
