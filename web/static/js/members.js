// The open room's people: the member list with everyone's presence (fetched for a new
// member nobody told us about), the Members toggle on narrow screens, and the
// "x is typing…" line with its timeout.

import { $, el } from "./dom.js";

const TYPING_SHOW_MS = 4000; // how long "x is typing" lasts without news

/** The open room's member list and typing line; `state.active` says which room that is. */
export function createMembers({ state, api }) {
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

  /** Their message arrived: they are no longer typing. */
  function stopTyping(room, user) {
    const typers = state.typing.get(room.id);
    if (typers && typers.has(user)) {
      clearTimeout(typers.get(user));
      typers.delete(user);
      if (state.active === room) renderTyping();
    }
  }

  // --- live frames (main.js's handleFrame picks the room) ---

  function onPresence(user, status) {
    state.presence.set(user, status);
    if (state.active && state.active.members.has(user)) renderMembers();
  }

  function onMemberJoined(room, user) {
    if (room.members.has(user)) return;
    room.members.set(user, state.presence.get(user) || "offline");
    room.memberCount += 1;
    if (state.active === room) renderMembers();
    if (!state.presence.has(user)) fetchStatus(user);
  }

  function onMemberLeft(room, user) {
    if (room.members.delete(user)) room.memberCount -= 1;
    if (state.active === room) renderMembers();
  }

  /** The session ended: no names left in the page. */
  function clear() {
    $("member-list").replaceChildren();
  }

  $("toggle-members").addEventListener("click", (e) => {
    const open = e.currentTarget.getAttribute("aria-expanded") !== "true";
    e.currentTarget.setAttribute("aria-expanded", String(open));
    $("room-view").classList.toggle("show-members", open);
  });

  return { renderMembers, renderTyping, onTyping, stopTyping, onPresence, onMemberJoined, onMemberLeft, clear };
}
