// The session: the token (sessionStorage, or localStorage when kept), the login screen,
// logging in, registering and logging out, picking up a stored session at boot, and
// ending a session however it ends (logout, a 401, close code 4001).

import { $ } from "./dom.js";
import { hideBanner } from "./notices.js";

const TOKEN_KEY = "greenroom.token";

export function storedToken() {
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

function showLogin(reason) {
  $("app-screen").hidden = true;
  $("login-screen").hidden = false;
  $("login-reason").textContent = reason || "";
  hideBanner();
  $("login-username").focus();
}

/**
 * The session's controls, bound to the login form and the logout button. `closeRoom`
 * shows no room, `forgetRoom` also empties the room view, `refreshRooms` loads the list.
 */
export function createSession({ state, api, live, closeRoom, forgetRoom, refreshRooms }) {
  function endSession(reason) {
    live.stop();
    clearToken();
    state.me = null;
    state.rooms.clear();
    state.outbox.clear();
    state.active = null;
    state.presence.clear();
    state.typing.clear();
    forgetRoom();
    $("login-form").reset();
    showLogin(reason);
  }

  async function enterApp(username) {
    state.me = username;
    $("login-screen").hidden = true;
    $("app-screen").hidden = false;
    $("me-name").textContent = username;
    closeRoom();
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

  /** A token kept from before (a reload, or "keep me signed in"): go straight in if it still works. */
  async function resume() {
    if (!storedToken()) return showLogin("");
    try {
      const me = await api.me();
      await enterApp(me.username);
    } catch (error) {
      if (error.status !== 401) showLogin(error.message);
    }
  }

  $("login-form").addEventListener("submit", (e) => submitLogin(e, false));
  $("register-submit").addEventListener("click", (e) => submitLogin(e, true));
  $("logout").addEventListener("click", logout);

  return { endSession, resume };
}
