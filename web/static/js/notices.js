// Notices that belong to no one screen: the connection banner and its countdown, toasts,
// the screen-reader announcer, and a form's one-line error.

import { $ } from "./dom.js";

let bannerTimer = null;

/** The connection banner for a status from live.js: hidden when ready, else a countdown. */
export function showBanner(status) {
  const banner = $("banner");
  clearInterval(bannerTimer);
  if (status.state === "ready") {
    banner.hidden = true;
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

export function hideBanner() {
  $("banner").hidden = true;
}

let announceTimer = null;

/** Tell screen readers about a new message (the live region only holds the latest). */
export function announce(text) {
  clearTimeout(announceTimer);
  const region = $("announcer");
  region.textContent = "";
  announceTimer = setTimeout(() => (region.textContent = text.slice(0, 300)), 50);
}

let toastTimer = null;

export function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), 6000);
}

export function formError(form, message) {
  const p = form.querySelector(".form-error");
  if (p) p.textContent = message;
}
