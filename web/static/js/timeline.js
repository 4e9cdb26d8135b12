// The message list as a virtual window: the room may hold thousands of messages in
// memory, but only WINDOW of them are nodes in the page. Scrolling to the top moves
// the window back (loading older pages over REST when it reaches the oldest held
// message); scrolling to the bottom moves it forward again.

export const WINDOW = 200;
const STEP = 100;
const EDGE_PX = 120;

export class Timeline {
  constructor({ scroller, list, pendingList, olderButton, startNote, jumpButton, renderMessage, renderPending, loadOlder, onSeen }) {
    Object.assign(this, { scroller, list, pendingList, olderButton, startNote, jumpButton });
    this.renderMessage = renderMessage;
    this.renderPending = renderPending;
    this.loadOlder = loadOlder; // async (room) -> how many older messages were added
    this.onSeen = onSeen; // the newest message is on screen
    this.room = null;
    this.start = 0;
    this.end = 0;
    this.loading = false;
    this.stuck = true; // the reader is at the bottom: stay there when the size changes
    scroller.addEventListener("scroll", () => this.onScroll(), { passive: true });
    new ResizeObserver(() => this.stuck && this.scrollToBottom()).observe(scroller);
    olderButton.addEventListener("click", () => this.older());
    jumpButton.addEventListener("click", () => this.toNewest());
  }

  /** Show a room from its newest messages (or around `focusSeq`, the new-messages divider). */
  show(room, focusSeq = null) {
    this.room = room;
    this.end = room.msgs.length;
    this.start = Math.max(0, this.end - WINDOW);
    this.render("bottom");
    if (focusSeq !== null) {
      const node = this.node(focusSeq);
      if (node) this.scroller.scrollTop = Math.max(0, node.offsetTop - this.scroller.clientHeight / 3);
    }
    this.onScroll();
  }

  /** The room's messages changed in bulk (a resume, a reset): re-render, keeping the view. */
  refresh() {
    if (!this.room) return;
    const stick = this.nearBottom();
    const anchor = stick ? "bottom" : this.anchor();
    const len = this.room.msgs.length;
    if (stick || this.end > len) {
      this.end = len;
      this.start = Math.max(0, len - WINDOW);
    } else if (anchor && anchor !== "bottom") {
      const i = this.room.msgs.findIndex((m) => m.seq === anchor.seq);
      if (i >= 0) {
        this.start = Math.max(0, i - STEP);
        this.end = Math.min(len, this.start + WINDOW);
      }
    }
    this.render(anchor);
  }

  /** One message was inserted at index i of the room. */
  inserted(i) {
    const len = this.room.msgs.length;
    if (i < this.start) {
      this.start += 1;
      this.end += 1;
      return;
    }
    const atEnd = this.end === len - 1;
    if (i !== len - 1) {
      if (i <= this.end) this.refresh();
      return;
    }
    if (!atEnd) {
      this.updateEdges();
      return; // the reader is further back: the jump button says there is more
    }
    const stick = this.nearBottom();
    this.list.append(this.renderMessage(this.room.msgs[i]));
    this.end = len;
    while (this.end - this.start > WINDOW && this.list.firstElementChild) {
      const first = this.list.firstElementChild;
      const height = first.offsetHeight;
      first.remove();
      this.start += 1;
      if (!stick) this.scroller.scrollTop -= height;
    }
    if (stick) this.scrollToBottom();
    this.updateEdges();
  }

  /** Re-render one message (its state changed: acked). */
  update(seq) {
    const node = this.node(seq);
    const i = this.room ? this.room.msgs.findIndex((m) => m.seq === seq) : -1;
    if (node && i >= 0) node.replaceWith(this.renderMessage(this.room.msgs[i]));
  }

  renderOutbox(entries) {
    const stick = this.nearBottom();
    this.pendingList.replaceChildren(...entries.map((e) => this.renderPending(e)));
    this.updateEdges();
    if (stick) this.scrollToBottom();
  }

  toNewest() {
    if (!this.room) return;
    this.end = this.room.msgs.length;
    this.start = Math.max(0, this.end - WINDOW);
    this.render("bottom");
    this.onScroll();
  }

  seesNewest() {
    return !!this.room && this.end === this.room.msgs.length && this.nearBottom();
  }

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 40;
  }

  node(seq) {
    return this.list.querySelector(`li[data-seq="${Number(seq)}"]`);
  }

  render(anchor) {
    const frag = document.createDocumentFragment();
    for (let i = this.start; i < this.end; i++) frag.append(this.renderMessage(this.room.msgs[i]));
    this.list.replaceChildren(frag);
    this.updateEdges();
    if (anchor === "bottom") this.scrollToBottom();
    else if (anchor) {
      const node = this.node(anchor.seq);
      if (node) this.scroller.scrollTop += this.topOf(node) - anchor.top;
    }
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.stuck = true;
  }

  topOf(node) {
    return node.getBoundingClientRect().top - this.scroller.getBoundingClientRect().top;
  }

  /** The first message on screen and where it is, to keep it still across a re-render. */
  anchor() {
    for (const node of this.list.children) {
      const top = this.topOf(node);
      if (top + node.offsetHeight > 0) return { seq: Number(node.dataset.seq), top };
    }
    return null;
  }

  updateEdges() {
    const room = this.room;
    if (!room) return;
    const atEnd = this.end === room.msgs.length;
    this.olderButton.hidden = !(this.start > 0 || room.hasOlder);
    this.startNote.hidden = this.start > 0 || room.hasOlder;
    this.pendingList.hidden = !atEnd;
    this.jumpButton.hidden = atEnd && this.nearBottom();
  }

  onScroll() {
    this.stuck = this.nearBottom();
    if (!this.room) return;
    if (this.scroller.scrollTop < EDGE_PX && (this.start > 0 || this.room.hasOlder)) this.older();
    else if (this.nearBottomEdge() && this.end < this.room.msgs.length) this.newer();
    this.updateEdges();
    if (this.seesNewest()) this.onSeen();
  }

  nearBottomEdge() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < EDGE_PX;
  }

  /** Move the window back; at the oldest held message, load an older page first. */
  async older() {
    const room = this.room;
    if (!room || this.loading) return;
    if (this.start === 0) {
      if (!room.hasOlder) return;
      this.loading = true;
      let added = 0;
      try {
        added = await this.loadOlder(room);
      } finally {
        this.loading = false;
      }
      if (this.room !== room) return;
      this.start += added;
      this.end += added;
      if (!added) {
        this.updateEdges();
        return;
      }
    }
    const anchor = this.anchor();
    this.start = Math.max(0, this.start - STEP);
    this.end = Math.min(room.msgs.length, this.start + WINDOW);
    this.render(anchor);
  }

  newer() {
    const anchor = this.anchor();
    this.end = Math.min(this.room.msgs.length, this.end + STEP);
    this.start = Math.max(0, this.end - WINDOW);
    this.render(anchor);
  }
}
