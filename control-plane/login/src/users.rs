//! Local accounts (`--enable-local-auth`): one row per user in the table `login_users` of
//! the control plane's database (SQLite or PostgreSQL, `migrations/{sqlite,postgres}`,
//! migrated on connect beside the control plane's own tables), or in memory with
//! `--database-uri memory`. E-mails are stored trimmed and lower-cased and are unique;
//! passwords only as argon2 PHC strings ([`crate::password`]).

use rhizo_control_plane::storage::{open_pool, StoreError};
use sqlx::migrate::Migrator;
use sqlx::AnyPool;
use sqlx::Row as _;
use std::collections::BTreeMap;
use std::sync::Mutex;

fn sqlite_migrations() -> Migrator {
    let mut m = sqlx::migrate!("migrations/sqlite");
    // The control plane's and the artifact manager's migrations share the history table.
    m.set_ignore_missing(true);
    m
}

fn postgres_migrations() -> Migrator {
    let mut m = sqlx::migrate!("migrations/postgres");
    m.set_ignore_missing(true);
    m
}

/// One local account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The user id tokens carry (`sub`); personal workspace `ws-user-<id>`.
    pub id: String,
    /// Trimmed, lower-cased e-mail; unique.
    pub email: String,
    /// Display name, if given at sign-up.
    pub name: Option<String>,
    /// argon2 PHC string.
    pub password_hash: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Why a user-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum UserStoreError {
    /// Another account has this e-mail.
    #[error("an account with this e-mail already exists")]
    Duplicate,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for UserStoreError {
    fn from(e: sqlx::Error) -> Self {
        if e.as_database_error()
            .is_some_and(|d| d.is_unique_violation())
        {
            return UserStoreError::Duplicate;
        }
        UserStoreError::Store(StoreError::from(e))
    }
}

/// The accounts, in the database or in memory.
pub enum UserStore {
    /// `--database-uri memory`: lost on restart.
    Memory(Mutex<BTreeMap<String, UserRecord>>),
    /// A SQLite file, `sqlite::memory:` or PostgreSQL.
    Sql(AnyPool),
}

impl std::fmt::Debug for UserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UserStore::Memory(_) => "UserStore::Memory",
            UserStore::Sql(_) => "UserStore::Sql",
        })
    }
}

/// The normal form e-mails are stored and looked up in: trimmed, lower-cased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

// === impl UserStore ===

impl UserStore {
    /// An empty in-memory store.
    pub fn memory() -> Self {
        UserStore::Memory(Mutex::new(BTreeMap::new()))
    }

    /// Opens the database at `uri` (`sqlite://<path>`, `sqlite::memory:`, `postgres://…`)
    /// and creates `login_users` if missing.
    ///
    /// Errors: as [`open_pool`] (bad URI, unreachable, migration failed).
    pub async fn connect(uri: &str) -> Result<Self, StoreError> {
        let (pool, _) = open_pool(uri, &sqlite_migrations(), &postgres_migrations()).await?;
        Ok(UserStore::Sql(pool))
    }

    /// Adds `user` (its e-mail must already be normalised).
    ///
    /// Errors: [`UserStoreError::Duplicate`] if the e-mail or id is taken.
    pub async fn insert(&self, user: &UserRecord) -> Result<(), UserStoreError> {
        match self {
            UserStore::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                if m.contains_key(&user.email) || m.values().any(|u| u.id == user.id) {
                    return Err(UserStoreError::Duplicate);
                }
                m.insert(user.email.clone(), user.clone());
                Ok(())
            }
            UserStore::Sql(pool) => {
                sqlx::query(
                    "INSERT INTO login_users (id, email, name, password_hash, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&user.id)
                .bind(&user.email)
                .bind(user.name.as_deref())
                .bind(&user.password_hash)
                .bind(user.created_at)
                .execute(pool)
                .await?;
                Ok(())
            }
        }
    }

    /// The account with the (normalised) `email`, if any.
    pub async fn by_email(&self, email: &str) -> Result<Option<UserRecord>, UserStoreError> {
        match self {
            UserStore::Memory(m) => Ok(m
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(email)
                .cloned()),
            UserStore::Sql(pool) => {
                let row = sqlx::query(
                    "SELECT id, email, name, password_hash, created_at FROM login_users \
                     WHERE email = $1",
                )
                .bind(email)
                .fetch_optional(pool)
                .await?;
                row.map(|r| {
                    Ok(UserRecord {
                        id: r.try_get("id")?,
                        email: r.try_get("email")?,
                        name: r.try_get("name")?,
                        password_hash: r.try_get("password_hash")?,
                        created_at: r.try_get("created_at")?,
                    })
                })
                .transpose()
                .map_err(|e: sqlx::Error| e.into())
            }
        }
    }

    /// Number of accounts.
    pub async fn count(&self) -> Result<u64, UserStoreError> {
        match self {
            UserStore::Memory(m) => Ok(m.lock().unwrap_or_else(|p| p.into_inner()).len() as u64),
            UserStore::Sql(pool) => {
                let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM login_users")
                    .fetch_one(pool)
                    .await?
                    .try_get("n")?;
                Ok(n.max(0) as u64)
            }
        }
    }

    /// Closes the database connections (no-op in memory).
    pub async fn close(&self) {
        if let UserStore::Sql(pool) = self {
            pool.close().await;
        }
    }
}
