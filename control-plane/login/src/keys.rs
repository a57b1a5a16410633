//! Login keys (workspace-api.md §9.1): `start` creates one, the log-in page `report`s a
//! token against it, `check` waits for that report and consumes the key. The reference
//! keeps `login_key:<key>` in Redis with a 180 s TTL; rhizo keeps them in process memory,
//! bounded in number, and drops expired ones on every insert (the reaping) and when they
//! are looked up. Time comes in as an argument, so expiry is tested without sleeping.
//!
//! Keys live on the instance that created them: in a multi-instance deployment the page
//! and `check` must reach the same instance (the reference's local-auth sessions have the
//! same limit, §9.1).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a login key lives (the reference's `MAXIMUM_LOGIN_TIME`, 180 s).
pub const KEY_LIFETIME: Duration = Duration::from_secs(180);
/// How many keys may be pending at once; `start` fails beyond that.
pub const MAX_PENDING_KEYS: usize = 10_000;

/// What the log-in page reported for a key: the token and the profile `check(profile=True)`
/// answers (workspace-api.md §9.1).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reported {
    /// The token handed to the client (already scoped when a workspace was asked for).
    pub token: String,
    /// The workspace the token is scoped to, if one was asked for.
    pub workspace: Option<String>,
    /// Lifetime of the token in seconds, as reported.
    pub expires_in: Option<u64>,
    /// The user's e-mail, if known.
    pub email: Option<String>,
    /// Whether the e-mail was verified by the identity provider (local accounts: false).
    pub email_verified: Option<bool>,
    /// Display name.
    pub name: Option<String>,
    /// Short name.
    pub nickname: Option<String>,
    /// The user id the token is for.
    pub user_id: Option<String>,
    /// Picture URL.
    pub picture: Option<String>,
}

/// Why a key operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key was never issued, was consumed already, or expired.
    #[error("invalid login key or the key has expired; call start() for a new one")]
    Unknown,
    /// [`MAX_PENDING_KEYS`] keys are pending.
    #[error("too many log-ins in progress ({MAX_PENDING_KEYS}); try again in a few minutes")]
    Full,
}

struct Entry {
    expires: Instant,
    reported: Option<Reported>,
}

/// The pending login keys.
pub struct LoginKeys {
    entries: Mutex<HashMap<String, Entry>>,
    lifetime: Duration,
    capacity: usize,
}

impl std::fmt::Debug for LoginKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginKeys")
            .field("pending", &self.len())
            .finish()
    }
}

impl Default for LoginKeys {
    fn default() -> Self {
        Self::new(KEY_LIFETIME, MAX_PENDING_KEYS)
    }
}

// === impl LoginKeys ===

impl LoginKeys {
    /// Keys living `lifetime`, at most `capacity` pending.
    pub fn new(lifetime: Duration, capacity: usize) -> Self {
        LoginKeys {
            entries: Mutex::new(HashMap::new()),
            lifetime,
            capacity,
        }
    }

    /// Number of keys held (expired ones not yet reaped included).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True if no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A new random key (32 hex digits) valid until `now + lifetime`. Expired keys are
    /// dropped first.
    ///
    /// Errors: [`KeyError::Full`] when `capacity` unexpired keys are pending.
    pub fn create(&self, now: Instant) -> Result<String, KeyError> {
        let mut map = self.lock();
        map.retain(|_, e| e.expires > now);
        if map.len() >= self.capacity {
            return Err(KeyError::Full);
        }
        let key = format!("{:032x}", rand::random::<u128>());
        map.insert(
            key.clone(),
            Entry {
                expires: now + self.lifetime,
                reported: None,
            },
        );
        Ok(key)
    }

    /// Records `reported` for `key` (a later report replaces an earlier one).
    ///
    /// Errors: [`KeyError::Unknown`] if the key is not pending at `now`.
    pub fn report(&self, key: &str, reported: Reported, now: Instant) -> Result<(), KeyError> {
        let mut map = self.lock();
        match map.get_mut(key) {
            Some(e) if e.expires > now => {
                e.reported = Some(reported);
                Ok(())
            }
            Some(_) => {
                map.remove(key);
                Err(KeyError::Unknown)
            }
            None => Err(KeyError::Unknown),
        }
    }

    /// The report for `key` if there is one, consuming the key; `Ok(None)` while the key
    /// is pending without a report.
    ///
    /// Errors: [`KeyError::Unknown`] if the key is not pending at `now`.
    pub fn take(&self, key: &str, now: Instant) -> Result<Option<Reported>, KeyError> {
        let mut map = self.lock();
        match map.get(key) {
            Some(e) if e.expires > now => {
                if e.reported.is_some() {
                    Ok(map.remove(key).and_then(|e| e.reported))
                } else {
                    Ok(None)
                }
            }
            Some(_) => {
                map.remove(key);
                Err(KeyError::Unknown)
            }
            None => Err(KeyError::Unknown),
        }
    }

    /// Drops `key` (e.g. after a `check` gave up), if present.
    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Never held across an await; a panic while held cannot leave the map torn.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(token: &str) -> Reported {
        Reported {
            token: token.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_key_is_reported_once_and_consumed_by_take() {
        let keys = LoginKeys::default();
        let t0 = Instant::now();
        let k = keys.create(t0).unwrap();
        assert_eq!(k.len(), 32);
        assert_eq!(keys.take(&k, t0), Ok(None), "pending, not reported yet");
        keys.report(&k, reported("tok"), t0).unwrap();
        assert_eq!(keys.take(&k, t0).unwrap().unwrap().token, "tok");
        assert_eq!(keys.take(&k, t0), Err(KeyError::Unknown), "consumed");
        assert_eq!(
            keys.report("nope", reported("x"), t0),
            Err(KeyError::Unknown)
        );
    }

    #[test]
    fn keys_expire_and_are_reaped() {
        let keys = LoginKeys::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        let a = keys.create(t0).unwrap();
        let _b = keys.create(t0).unwrap();
        assert_eq!(keys.create(t0), Err(KeyError::Full), "bounded");
        let late = t0 + Duration::from_secs(10);
        assert_eq!(keys.report(&a, reported("t"), late), Err(KeyError::Unknown));
        assert_eq!(keys.take(&a, late), Err(KeyError::Unknown));
        // Creating reaps the expired one still held.
        let c = keys.create(late).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.take(&c, late), Ok(None));
        keys.remove(&c);
        assert!(keys.is_empty());
    }
}
