// The room list panel: the rooms the user belongs to with their unread counts (and the
// total in the tab's title), the public rooms to join, joining by ID or from that list,
// creating a room, and dropping a room the user is no longer in.

import { $, el, unreadLabel } from "./dom.js";
import { formError, toast } from "./notices.js";
import { Room } from "./state.js";

/** The panel's controls, bound to its forms. `openRoom` and `showRoom` are the room view's. */
export function createRoomList({ state, api, live, openRoom, showRoom }) {
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

  $("create-form").addEventListener("submit", createRoom);
  $("join-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("join-id").value.trim();
    if (id) joinRoom(id, e.target);
  });
  $("public-refresh").addEventListener("click", refreshRooms);
  $("join-panel").addEventListener("toggle", (e) => e.target.open && refreshRooms());

  return { refreshRooms, renderRooms, dropRoom };
}
