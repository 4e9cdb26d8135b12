// The live half: one WebSocket that authenticates with its first frame, and reconnects
// by itself with exponential backoff and jitter until stopped. What to do on `ready`
// (join every room with `since`, flush queued sends) is the caller's business.

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 10000;
const OPEN_TIMEOUT_MS = 10000;
const PING_EVERY_MS = 20000;
const SILENCE_LIMIT_MS = 45000;

export class Live {
  constructor({ getToken, onFrame, onStatus, onUnauthorized }) {
    this.getToken = getToken;
    this.onFrame = onFrame;
    this.onStatus = onStatus;
    this.onUnauthorized = onUnauthorized;
    this.ws = null;
    this.ready = false;
    this.stopped = true;
    this.attempt = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    this.lastHeard = 0;
    this.authError = "";
    this.retryAt = 0;
  }

  start() {
    this.stopped = false;
    this.attempt = 0;
    this.connect();
  }

  stop() {
    this.stopped = true;
    this.ready = false;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      ws.close(1000);
    }
  }

  /** Try at once instead of waiting out the backoff (the banner's button, the `online` event). */
  reconnectNow() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  /** Send a frame if the connection is authenticated; false means it was not sent. */
  send(frame) {
    if (!this.ready || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  connect() {
    if (this.stopped) return;
    const token = this.getToken();
    if (!token) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws`);
    this.ws = ws;
    this.ready = false;
    this.authError = "";
    this.onStatus({ state: "connecting", attempt: this.attempt });
    const openTimer = setTimeout(() => ws.close(), OPEN_TIMEOUT_MS);
    ws.onopen = () => {
      this.lastHeard = Date.now();
      ws.send(JSON.stringify({ type: "auth", token }));
    };
    ws.onmessage = (event) => {
      this.lastHeard = Date.now();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.type === "ready") {
        clearTimeout(openTimer);
        this.ready = true;
        this.attempt = 0;
        this.startPings(ws);
        this.onStatus({ state: "ready" });
      } else if (frame.type === "error" && frame.code === "unauthorized") {
        this.authError = frame.message || "";
      }
      this.onFrame(frame);
    };
    ws.onclose = (event) => {
      clearTimeout(openTimer);
      clearInterval(this.pingTimer);
      if (this.ws !== ws) return;
      this.ws = null;
      this.ready = false;
      if (this.stopped) return;
      if (event.code === 4001) {
        this.stopped = true;
        this.onUnauthorized(this.authError || event.reason || "Your session has ended.");
        return;
      }
      this.scheduleRetry(event.code === 4009 ? 30000 : null);
    };
    ws.onerror = () => {}; // onclose follows and decides
  }

  scheduleRetry(fixedMs) {
    const base = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 1.8 ** this.attempt);
    // Full jitter on the upper half: many tabs dropped at once do not return at once.
    const delay = fixedMs ?? base / 2 + (Math.random() * base) / 2;
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this.onStatus({ state: "down", retryAt: this.retryAt, attempt: this.attempt });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  startPings(ws) {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) {
        ws.close(); // a silent network: onclose reconnects
        return;
      }
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "ping" }));
    }, PING_EVERY_MS);
  }
}
