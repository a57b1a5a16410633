-- rhizo artifact manager schema v1 (PostgreSQL). Keep in step with
-- ../sqlite/20260301000000_artifacts.sql: same columns and meaning (spec artifacts.md §1.1).
-- JSON columns are TEXT. Times are unix seconds.
CREATE TABLE IF NOT EXISTS artifacts (
    id             TEXT    PRIMARY KEY NOT NULL,   -- UUIDv7
    type           TEXT,
    workspace      TEXT    NOT NULL,
    parent_id      TEXT    REFERENCES artifacts (id) ON DELETE SET NULL,
    alias          TEXT,
    manifest       TEXT,                           -- JSON
    staging        TEXT,                           -- JSON; NULL when committed
    download_count DOUBLE PRECISION NOT NULL DEFAULT 0,
    view_count     DOUBLE PRECISION NOT NULL DEFAULT 0,
    file_count     BIGINT  NOT NULL DEFAULT 0,
    created_at     BIGINT  NOT NULL,
    created_by     TEXT,
    last_modified  BIGINT  NOT NULL,
    versions       TEXT    NOT NULL DEFAULT '[]',  -- JSON list of {version, comment, created_at}
    config         TEXT,                           -- JSON
    secrets        TEXT,                           -- JSON
    CONSTRAINT _workspace_alias_uc UNIQUE (workspace, alias)
);
CREATE INDEX IF NOT EXISTS ix_artifacts_workspace ON artifacts (workspace);
CREATE INDEX IF NOT EXISTS ix_artifacts_parent_id ON artifacts (parent_id);
