-- rhizo local accounts (SQLite). Keep in step with ../postgres/20261204000000_login_users.sql.
-- email is stored trimmed and lower-cased; password_hash is an argon2 PHC string.
-- Times are unix seconds.
CREATE TABLE IF NOT EXISTS login_users (
    id            TEXT    PRIMARY KEY NOT NULL,
    email         TEXT    NOT NULL,
    name          TEXT,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    CONSTRAINT login_users_email_uc UNIQUE (email)
);
