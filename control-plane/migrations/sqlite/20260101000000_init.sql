-- rhizo schema v1 (SQLite). Keep in step with ../postgres/20260101000000_init.sql:
-- same tables, columns and meaning; only the id column of event_logs differs.

-- Workspace records (workspace-api.md §2.5). JSON columns are TEXT.
CREATE TABLE workspaces (
    id            TEXT    PRIMARY KEY NOT NULL,
    name          TEXT    NOT NULL,
    description   TEXT    NOT NULL DEFAULT '',
    persistent    INTEGER NOT NULL DEFAULT 0,   -- 0 | 1
    owners        TEXT    NOT NULL DEFAULT '[]', -- JSON list of strings
    read_only     INTEGER NOT NULL DEFAULT 0,   -- 0 | 1
    config        TEXT    NOT NULL DEFAULT '{}', -- JSON object
    service_types TEXT    NOT NULL DEFAULT '{}'  -- JSON object, type id -> ServiceTypeInfo
);

-- Revoked tokens (workspace-api.md §1.4, §5.4): SHA-256 hex of the token, and the
-- unix time (seconds) after which the row no longer matters.
CREATE TABLE revoked_tokens (
    token_hash TEXT    PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);

-- Event logs (workspace-api.md §2.10). timestamp_ms: unix milliseconds, UTC.
CREATE TABLE event_logs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type   TEXT    NOT NULL,
    workspace    TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    data         TEXT                          -- JSON, nullable
);
CREATE INDEX event_logs_timestamp ON event_logs (timestamp_ms);
CREATE INDEX event_logs_workspace_user ON event_logs (workspace, user_id, event_type);
