// DOM helpers. Everything a user typed goes in through text nodes only, never as HTML.

/** An element with attributes and children; strings become text nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

export const $ = (id) => document.getElementById(id);

/** Local time, with the date too when it is not today. */
export function formatTime(iso, now = new Date()) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (d.toDateString() === now.toDateString()) return time;
  return `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

function escapeRegExp(s) {
  return s.replace(/[.*+?^${}()|[\]\\-]/g, "\\$&");
}

/** Whether the body mentions @name (case-insensitive, as usernames are). */
export function mentions(body, name) {
  if (!name) return false;
  return mentionPattern(name).test(body);
}

function mentionPattern(name) {
  return new RegExp(`(^|[^\\w.-])(@${escapeRegExp(name)})(?![\\w-])`, "i");
}

/** The body as text nodes, with the mentions of `name` wrapped in <mark>. */
export function bodyNodes(body, name) {
  if (!name) return [document.createTextNode(body)];
  const pattern = new RegExp(mentionPattern(name).source, "gi");
  const nodes = [];
  let last = 0;
  for (const m of body.matchAll(pattern)) {
    const start = m.index + m[1].length;
    nodes.push(document.createTextNode(body.slice(last, start)));
    nodes.push(el("mark", { class: "mention" }, m[2]));
    last = start + m[2].length;
  }
  nodes.push(document.createTextNode(body.slice(last)));
  return nodes;
}

// The server stops counting at UNREAD_MAX (100 by default): from there on, "99+".
export function unreadLabel(n) {
  return n > 99 ? "99+" : String(n);
}

/** A random id for client_msg_id; getRandomValues works outside secure contexts too. */
export function randomId(prefix = "w") {
  const bytes = crypto.getRandomValues(new Uint8Array(9));
  return prefix + "-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
