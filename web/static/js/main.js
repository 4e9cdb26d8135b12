// The page's controller: login, the room list, the open room, and the live frames
// that change them. State lives in state.js, the message window in timeline.js, the
// WebSocket in live.js, REST in api.js. All user content goes in as text (dom.js).

import { Api } from "./api.js";
import { $, bodyNodes, el, formatTime, mentions, randomId, unreadLabel } from "./dom.js";
import { Live } from "./live.js";
import { Outbox, Room } from "./state.js";
import { Timeline } from "./timeline.js";

const TOKEN_KEY = "greenroom.token";
const TYPING_SEND_MS = 2000; // at most one typing frame per this, while typing
const TYPING_SHOW_MS = 4000; // how long "x is typing" lasts without news
const READ_DEBOUNCE_MS = 300;
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

// --- the session: the token lives in sessionStorage, or localStorage when kept ---

function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY) || localStorage.getItem(TOKEN_KEY);
}

function saveToken(token, keep) {
  sessionStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(TOKEN_KEY);
  (keep ? localStorage : sessionStorage).setItem(TOKEN_KEY, token);
}

function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(TOKEN_KEY);
}

const api = new Api(storedToken, (error) => endSession(error.message));
const live = new Live({
  getToken: storedToken,
  onFrame: (frame) => handleFrame(frame),
  onStatus: (status) => showConnection(status),
  onUnauthorized: (reason) => endSession(reason),
});

// --- screens ---

function showLogin(reason) {
  $("app-screen").hidden = true;
  $("login-screen").hidden = false;
  $("login-reason").textContent = reason || "";
  $("banner").hidden = true;
  $("login-username").focus();
}

function endSession(reason) {
  live.stop();
  clearToken();
  state.me = null;
  state.rooms.clear();
  state.outbox.clear();
  state.active = null;
  state.presence.clear();
  state.typing.clear();
  // Nothing of this user stays in the page, not even hidden.
  showRoom(null);
  $("messages").replaceChildren();
  $("pending").replaceChildren();
  $("member-list").replaceChildren();
  $("login-form").reset();
  showLogin(reason);
}

async function enterApp(username) {
  state.me = username;
  $("login-screen").hidden = true;
  $("app-screen").hidden = false;
  $("me-name").textContent = username;
  showRoom(null);
  live.start();
  await refreshRooms();
}

async function submitLogin(event, register) {
  event.preventDefault();
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  const keep = $("login-keep").checked;
  const reason = $("login-reason");
  if (username.length < 3 || password.length < 8) {
    reason.textContent = "Enter a username (3 to 32 characters) and a password of at least 8 characters.";
    return;
  }
  reason.textContent = register ? "Creating your account…" : "Logging in…";
  try {
    if (register) await api.register(username, password);
    const session = await api.login(username, password);
    saveToken(session.token, keep);
    $("login-password").value = "";
    reason.textContent = "";
    await enterApp(session.username);
  } catch (error) {
    reason.textContent = error.message;
  }
}

async function logout() {
  try {
    await api.logout();
  } catch {
    // The session may be gone already: either way this tab is logged out.
  }
  endSession("You have logged out.");
}

// --- the connection banner ---

let bannerTimer = null;

function showConnection(status) {
  const banner = $("banner");
  clearInterval(bannerTimer);
  if (status.state === "ready") {
    banner.hidden = true;
    for (const room of state.rooms.values()) room.joined = room.joining = false;
    refreshRooms();
    return;
  }
  if (status.state === "connecting" && !status.attempt) return;
  banner.hidden = false;
  const text = $("banner-text");
  if (status.state === "connecting") {
    text.textContent = "Connection lost. Reconnecting…";
    return;
  }
  const tick = () => {
    const s = Math.max(0, Math.ceil((status.retryAt - Date.now()) / 1000));
    text.textContent = `Connection lost. Reconnecting in ${s} s… Messages you send meanwhile are queued.`;
  };
  tick();
  bannerTimer = setInterval(tick, 1000);
}

// --- rooms ---

async function refreshRooms() {
  let rooms;
  try {
    rooms = await api.rooms();
  } catch (error) {
    if (error.status !== 401) toast(error.message);
    return;
  }
  const seen = new Set();
  state.publicRooms = [];
  for (const info of rooms) {
    if (!info.member) {
      if (!info.private) state.publicRooms.push(info);
      continue;
    }
    seen.add(info.id);
    const room = state.rooms.get(info.id);
    if (room) room.update(info);
    else state.rooms.set(info.id, new Room(info));
  }
  for (const id of [...state.rooms.keys()]) if (!seen.has(id)) dropRoom(id);
  joinAll();
  renderRooms();
}

/** Follow every room on this connection, resuming each from the last seq seen. */
function joinAll() {
  if (!live.ready) return;
  for (const room of state.rooms.values()) {
    if (room.joined || room.joining) continue;
    const frame = { type: "join", room: room.id };
    if (room.maxSeq !== null) frame.since = room.maxSeq;
    if (live.send(frame)) room.joining = true;
  }
}

function dropRoom(id, notice) {
  const room = state.rooms.get(id);
  if (!room) return;
  state.rooms.delete(id);
  for (const entry of state.outbox.forRoom(id)) state.outbox.delete(entry.id);
  state.typing.delete(id);
  if (state.active === room) {
    showRoom(null, notice);
  } else if (notice) toast(notice);
  renderRooms();
}

function renderRooms() {
  // The lists are rebuilt on every change: keep the keyboard focus on the same room.
  const focused = document.activeElement;
  const refocus = focused && focused.closest("#room-list, #public-list") ? focused.closest("[data-room]") : null;
  const refocusId = refocus ? refocus.dataset.room : null;
  const inPublic = !!(focused && focused.closest("#public-list"));
  const list = $("room-list");
  const rooms = [...state.rooms.values()].sort((a, b) => a.name.localeCompare(b.name));
  list.replaceChildren(
    ...rooms.map((room) => {
      const current = state.active === room;
      return el(
        "li",
        {},
        el(
          "button",
          {
            type: "button",
            class: "room-link",
            "aria-current": current ? "true" : null,
            dataset: { room: room.id },
            onclick: () => openRoom(room.id),
          },
          el("span", { class: "room-name" }, room.name),
          room.isPrivate ? el("span", { class: "tag" }, "private") : null,
          el(
            "span",
            { class: "badge", hidden: room.unread <= 0, "aria-label": `${unreadLabel(room.unread)} unread` },
            unreadLabel(room.unread),
          ),
        ),
      );
    }),
  );
  $("room-list-empty").hidden = rooms.length > 0;
  const pub = $("public-list");
  pub.replaceChildren(
    ...state.publicRooms.map((info) =>
      el(
        "li",
        { dataset: { room: info.id } },
        el("span", { class: "room-name" }, info.name),
        el("span", { class: "muted" }, ` ${info.member_count} member${info.member_count === 1 ? "" : "s"}`),
        el("button", { type: "button", onclick: () => joinRoom(info.id), "aria-label": `Join ${info.name}` }, "Join"),
      ),
    ),
  );
  if (!state.publicRooms.length) pub.append(el("li", { class: "muted" }, "No other public rooms."));
  if (refocusId) {
    const again = (inPublic ? pub : list).querySelector(`[data-room="${CSS.escape(refocusId)}"]`);
    const target = again && (again.matches("button") ? again : again.querySelector("button"));
    if (target) target.focus();
  }
  document.title = totalUnread() ? `(${totalUnread()}) Greenroom` : "Greenroom";
}

function totalUnread() {
  let n = 0;
  for (const room of state.rooms.values()) n += Math.max(0, room.unread);
  return n;
}

async function joinRoom(id, form) {
  try {
    const info = await api.join(id);
    if (form) form.reset();
    $("join-panel").open = false;
    await refreshRooms();
    openRoom(info.id);
  } catch (error) {
    if (form) formError(form, error.message);
    else toast(error.message);
  }
}

async function createRoom(event) {
  event.preventDefault();
  const form = event.target;
  const capacity = Number($("create-capacity").value || 50);
  try {
    const info = await api.createRoom($("create-name").value, capacity, $("create-private").checked);
    form.reset();
    formError(form, "");
    $("create-panel").open = false;
    await refreshRooms();
    openRoom(info.id);
  } catch (error) {
    formError(form, error.message);
  }
}

function formError(form, message) {
  const p = form.querySelector(".form-error");
  if (p) p.textContent = message;
}

// --- the open room ---

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
  renderMembers();
  renderTyping();
  timeline.show(room, room.divider);
  timeline.renderOutbox(state.outbox.forRoom(room.id));
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

function renderMembers() {
  const room = state.active;
  if (!room) return;
  const names = [...room.members.keys()].sort((a, b) => {
    const on = (n) => (state.presence.get(n) === "online" ? 0 : 1);
    return on(a) - on(b) || a.localeCompare(b);
  });
  $("member-list").replaceChildren(
    ...names.map((name) => {
      const status = state.presence.get(name) || room.members.get(name) || "offline";
      return el(
        "li",
        { dataset: { user: name, status } },
        el("span", { class: `dot ${status}`, "aria-hidden": "true" }),
        el("span", { class: "member-name" }, name),
        el("span", { class: "muted status-text" }, status),
      );
    }),
  );
  const more = room.memberCount - names.length;
  $("members-more").textContent = more > 0 ? `and ${more} more` : "";
}

/** A new member's status: no presence frame came for someone who shared no room with us. */
async function fetchStatus(username) {
  try {
    const user = await api.user(username);
    if (!state.presence.has(username)) state.presence.set(username, user.status);
    if (state.active && state.active.members.has(username)) renderMembers();
  } catch {
    // Not worth a toast: the member list shows them offline until news comes.
  }
}

function renderTyping() {
  const room = state.active;
  const who = room ? [...(state.typing.get(room.id) || new Map()).keys()] : [];
  let text = "";
  if (who.length === 1) text = `${who[0]} is typing…`;
  else if (who.length === 2) text = `${who[0]} and ${who[1]} are typing…`;
  else if (who.length > 2) text = "Several people are typing…";
  $("typing").textContent = text;
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

// --- live frames ---

function handleFrame(f) {
  const room = typeof f.room === "string" ? state.rooms.get(f.room) : null;
  switch (f.type) {
    case "joined":
      return room && onJoined(room, f);
    case "message":
      return room && onMessage(room, f);
    case "ack":
      return onAck(room, f);
    case "error":
      return onError(f);
    case "read":
      if (room) {
        room.applyMarker(f);
        renderRooms();
      }
      return;
    case "typing":
      return room && f.user !== state.me && onTyping(room, f.user);
    case "presence":
      state.presence.set(f.user, f.status);
      if (state.active && state.active.members.has(f.user)) renderMembers();
      return;
    case "member_joined":
      if (room && !room.members.has(f.user)) {
        room.members.set(f.user, state.presence.get(f.user) || "offline");
        room.memberCount += 1;
        if (state.active === room) renderMembers();
        if (!state.presence.has(f.user)) fetchStatus(f.user);
      }
      return;
    case "member_left":
      if (!room) return;
      if (f.user === state.me) return dropRoom(room.id, `You left ${room.name}.`);
      if (room.members.delete(f.user)) room.memberCount -= 1;
      if (state.active === room) renderMembers();
      return;
    case "room_deleted":
      return room && dropRoom(room.id, `The room ${room.name} was deleted.`);
    case "left":
      return room && dropRoom(room.id);
    default:
      return;
  }
}

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
    renderMembers();
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
    const typers = state.typing.get(room.id);
    if (typers && typers.has(f.user)) {
      clearTimeout(typers.get(f.user));
      typers.delete(f.user);
      if (state.active === room) renderTyping();
    }
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

function onError(f) {
  const entry = f.client_msg_id ? state.outbox.get(f.client_msg_id) : null;
  if (entry) {
    entry.state = "failed";
    entry.error = f.message || f.code;
    if (state.active && state.active.id === entry.room) timeline.renderOutbox(state.outbox.forRoom(entry.room));
    return;
  }
  const gone = ["room_not_found", "not_a_member", "room_restricted"];
  if (f.room && state.rooms.has(f.room) && gone.includes(f.code)) {
    return dropRoom(f.room, f.message);
  }
  if (f.code !== "unauthorized") toast(f.message || f.code);
}

function onTyping(room, user) {
  let typers = state.typing.get(room.id);
  if (!typers) state.typing.set(room.id, (typers = new Map()));
  clearTimeout(typers.get(user));
  typers.set(
    user,
    setTimeout(() => {
      typers.delete(user);
      if (state.active === room) renderTyping();
    }, TYPING_SHOW_MS),
  );
  if (state.active === room) renderTyping();
}

// --- small things ---

let announceTimer = null;

/** Tell screen readers about a new message (the live region only holds the latest). */
function announce(text) {
  clearTimeout(announceTimer);
  const region = $("announcer");
  region.textContent = "";
  announceTimer = setTimeout(() => (region.textContent = text.slice(0, 300)), 50);
}

let toastTimer = null;

function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), 6000);
}

function bind() {
  $("login-form").addEventListener("submit", (e) => submitLogin(e, false));
  $("register-submit").addEventListener("click", (e) => submitLogin(e, true));
  $("logout").addEventListener("click", logout);
  $("banner-retry").addEventListener("click", () => live.reconnectNow());
  window.addEventListener("online", () => live.reconnectNow());
  $("create-form").addEventListener("submit", createRoom);
  $("join-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("join-id").value.trim();
    if (id) joinRoom(id, e.target);
  });
  $("public-refresh").addEventListener("click", refreshRooms);
  $("join-panel").addEventListener("toggle", (e) => e.target.open && refreshRooms());
  $("back").addEventListener("click", () => showRoom(null));
  $("toggle-members").addEventListener("click", (e) => {
    const open = e.currentTarget.getAttribute("aria-expanded") !== "true";
    e.currentTarget.setAttribute("aria-expanded", String(open));
    $("room-view").classList.toggle("show-members", open);
  });
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
  markReadSoon();
  if (!state.me || document.visibilityState !== "visible" || Date.now() - lastRefresh < ROOMS_REFRESH_MS) return;
  lastRefresh = Date.now();
  refreshRooms();
}

async function boot() {
  bind();
  if (!storedToken()) return showLogin("");
  try {
    const me = await api.me();
    await enterApp(me.username);
  } catch (error) {
    if (error.status !== 401) showLogin(error.message);
  }
}

boot();
