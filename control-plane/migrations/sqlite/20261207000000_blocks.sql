-- Blocked users and IP addresses (workspace-api.md §9.3, `block_user` / `block_ip` of
-- ws-user-root/admin-utils). kind: 'user' | 'ip'; expires_at: unix seconds after which
-- the block no longer applies. Same in both backends.
CREATE TABLE blocks (
    kind       TEXT    NOT NULL,
    block_key  TEXT    NOT NULL,
    reason     TEXT    NOT NULL DEFAULT '',
    expires_at BIGINT  NOT NULL,
    PRIMARY KEY (kind, block_key)
);
