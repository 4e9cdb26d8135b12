// The REST half: one function per route the page uses. The token goes in the
// Authorization header only, never in a URL.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

export class Api {
  constructor(getToken, onUnauthorized) {
    this.getToken = getToken;
    this.onUnauthorized = onUnauthorized;
  }

  async request(method, path, body) {
    const headers = {};
    const token = this.getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit",
        cache: "no-store",
      });
    } catch {
      throw new ApiError(0, "network", "The server cannot be reached.");
    }
    if (response.status === 204) return null;
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const err = (data && data.error) || {};
      const error = new ApiError(response.status, err.code || "error", err.message || `HTTP ${response.status}`);
      if (response.status === 401 && token && path !== "/api/auth/login") this.onUnauthorized(error);
      throw error;
    }
    return data;
  }

  register(username, password) {
    return this.request("POST", "/api/auth/register", { username, password });
  }
  login(username, password) {
    return this.request("POST", "/api/auth/login", { username, password });
  }
  logout() {
    return this.request("POST", "/api/auth/logout");
  }
  me() {
    return this.request("GET", "/api/auth/me");
  }

  user(username) {
    return this.request("GET", `/api/users/${encodeURIComponent(username)}`);
  }

  /** Every room the user can see, all pages. */
  async rooms() {
    const rooms = [];
    let cursor = null;
    for (let page = 0; page < 50; page++) {
      const query = cursor ? `?limit=500&cursor=${encodeURIComponent(cursor)}` : "?limit=500";
      const data = await this.request("GET", `/api/rooms${query}`);
      rooms.push(...data.rooms);
      cursor = data.next_cursor;
      if (!cursor) break;
    }
    return rooms;
  }
  room(id) {
    return this.request("GET", `/api/rooms/${encodeURIComponent(id)}`);
  }
  createRoom(name, capacity, isPrivate) {
    return this.request("POST", "/api/rooms", { name, capacity, private: isPrivate });
  }
  join(id) {
    return this.request("POST", `/api/rooms/${encodeURIComponent(id)}/join`);
  }
  leave(id) {
    return this.request("POST", `/api/rooms/${encodeURIComponent(id)}/leave`);
  }
  deleteRoom(id) {
    return this.request("DELETE", `/api/rooms/${encodeURIComponent(id)}`);
  }
  invite(id, username) {
    return this.request("POST", `/api/rooms/${encodeURIComponent(id)}/invites`, { username });
  }
  older(id, before, limit = 100) {
    return this.request("GET", `/api/rooms/${encodeURIComponent(id)}/messages?before=${before}&limit=${limit}`);
  }
  newest(id, limit = 100) {
    return this.request("GET", `/api/rooms/${encodeURIComponent(id)}/messages?limit=${limit}`);
  }
}
