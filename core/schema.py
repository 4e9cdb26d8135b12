"""The one schema, written in SQLite's dialect; core.postgres translates its types.

Every feature's tables live here, so both drivers create them the same way.
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username_key TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_seen REAL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    created_at REAL NOT NULL,
    last_active REAL NOT NULL
);
-- A login counts the user's sessions (MAX_SESSIONS_PER_USER).
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(username);
CREATE TABLE IF NOT EXISTS rooms (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    owner TEXT NOT NULL REFERENCES users(username),
    capacity INTEGER NOT NULL,
    private INTEGER NOT NULL,
    created_at REAL NOT NULL,
    last_seq INTEGER NOT NULL DEFAULT 0
);
-- GET /api/rooms pages in (created_at, id) order; the owned-room cap counts by owner.
CREATE INDEX IF NOT EXISTS rooms_by_created ON rooms(created_at, id);
CREATE INDEX IF NOT EXISTS rooms_by_owner ON rooms(owner);
CREATE TABLE IF NOT EXISTS members (
    room_id TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    username TEXT NOT NULL REFERENCES users(username),
    joined_at REAL NOT NULL,
    -- The member's read marker: the newest seq they have read (chat: read markers).
    last_read_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, username)
);
CREATE INDEX IF NOT EXISTS members_by_user ON members(username);
CREATE TABLE IF NOT EXISTS invites (
    room_id TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    username TEXT NOT NULL REFERENCES users(username),
    PRIMARY KEY (room_id, username)
);
CREATE TABLE IF NOT EXISTS messages (
    room_id TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    username TEXT NOT NULL,
    body TEXT NOT NULL,
    ts REAL NOT NULL,
    client_msg_id TEXT,
    PRIMARY KEY (room_id, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_idempotency
    ON messages(username, client_msg_id) WHERE client_msg_id IS NOT NULL;
"""

# Columns added since a database was first created: (table, column, type and default).
# CREATE TABLE IF NOT EXISTS leaves an older table as it was, so each driver adds
# these on open where they are missing; a database from an earlier release keeps working.
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("members", "last_read_seq", "INTEGER NOT NULL DEFAULT 0"),
)
