// What the page knows, without DOM or I/O: rooms, their messages by seq (so a
// message is held once however often it arrives), read markers and unread counts,
// and the sends still waiting for their ack.

export class Room {
  constructor(info) {
    this.id = info.id;
    this.name = info.id;
    this.owner = "";
    this.isPrivate = false;
    this.lastRead = 0;
    this.unread = 0;
    this.msgs = []; // stored messages, oldest first, each seq once
    this.seqs = new Set();
    this.maxSeq = null; // the newest seq received: `since` when resuming (null: never joined)
    this.hasOlder = false;
    this.joined = false; // joined on the current connection
    this.members = new Map(); // username -> status, from `joined`
    this.memberCount = 0;
    this.divider = null; // the first unread seq when the room was opened
    this.awaitingAck = new Set(); // client_msg_ids stored but not acked yet
    this.update(info);
  }

  update(info) {
    if (typeof info.name === "string") this.name = info.name;
    if (typeof info.owner === "string") this.owner = info.owner;
    if (typeof info.private === "boolean") this.isPrivate = info.private;
    this.applyMarker(info);
  }

  /** A server snapshot of the marker (room object, `joined` or `read` frame). */
  applyMarker(info) {
    if (typeof info.last_read_seq === "number") this.lastRead = Math.max(this.lastRead, info.last_read_seq);
    if (typeof info.unread === "number") this.unread = info.unread;
  }

  newestSeq() {
    return this.msgs.length ? this.msgs[this.msgs.length - 1].seq : 0;
  }

  /** Add a message: its index, or -1 if it was already here. */
  insert(msg) {
    if (typeof msg.seq !== "number" || this.seqs.has(msg.seq)) return -1;
    this.seqs.add(msg.seq);
    if (this.maxSeq === null || msg.seq > this.maxSeq) this.maxSeq = msg.seq;
    let i = this.msgs.length;
    while (i > 0 && this.msgs[i - 1].seq > msg.seq) i--;
    this.msgs.splice(i, 0, msg);
    return i;
  }

  /** Older messages from a REST page, put in front; how many were new. */
  prepend(messages) {
    const fresh = messages.filter((m) => !this.seqs.has(m.seq));
    for (const m of fresh) this.seqs.add(m.seq);
    this.msgs = [...fresh, ...this.msgs].sort((a, b) => a.seq - b.seq);
    return fresh.length;
  }

  /** Start over from this contiguous block (a truncated resume left a gap). */
  reset(messages) {
    this.msgs = [];
    this.seqs = new Set();
    for (const m of messages) this.insert(m);
  }

  /** Count a live message from someone else above the marker (between snapshots). */
  countUnread(msg, me) {
    if (msg.user !== me && msg.seq > this.lastRead) this.unread += 1;
  }

  firstUnreadSeq(me) {
    const m = this.msgs.find((x) => x.seq > this.lastRead && x.user !== me);
    return m ? m.seq : null;
  }
}

/** Sends not yet acked: client_msg_id -> {id, room, body, state, error}. */
export class Outbox {
  constructor() {
    this.items = new Map();
  }
  add(entry) {
    this.items.set(entry.id, entry);
  }
  get(id) {
    return this.items.get(id);
  }
  delete(id) {
    return this.items.delete(id);
  }
  forRoom(roomId) {
    return [...this.items.values()].filter((e) => e.room === roomId);
  }
  clear() {
    this.items.clear();
  }
}
