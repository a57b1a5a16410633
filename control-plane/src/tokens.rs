//! Minting and verifying HS256 JWTs in the reference claim format (protocol.md §8,
//! workspace-api.md §1.4–1.5), the root token, and token revocation (§5.4).
//!
//! [`TokenService`] owns the revocation set and the store it is kept in: a token is
//! revoked only through [`TokenService::revoke`], which writes the revocation through the
//! store, so a revocation always survives a restart ([`TokenService::load`]).

use crate::error::{ManagerError, ManagerResult};
use crate::storage::{Store, StoreError};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rhizo_protocol::token::ClaimFormat;
use rhizo_protocol::user::UserInfo;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Signature, issuer, audience or shape is wrong.
    #[error("Invalid token: {0}")]
    Invalid(String),
    /// `exp` is in the past.
    #[error("The token has expired. Please log in again to obtain a new token.")]
    Expired,
    /// The token was revoked with `revoke_token`.
    #[error("Token has been revoked")]
    Revoked,
    /// The token's user is blocked (`block_user`, workspace-api.md §9.3): the text is
    /// `User is blocked: <reason>`.
    #[error("{0}")]
    Blocked(String),
}

// === impl TokenService (revocation) ===

impl TokenService {
    /// Revokes a valid token until it would have expired (a year when it names no
    /// expiry), here and in the store; returns its SHA-256 hex ([`token_hash`]), the
    /// origin of the sessions it opened.
    ///
    /// Errors: [`ManagerError::InvalidArgument`] (`Invalid token: …`) when the token does
    /// not verify (invalid, expired, already revoked) or is the root token;
    /// [`ManagerError::Store`] when the revocation could not be stored (it holds on this
    /// instance until restart).
    ///
    /// [`token_hash`]: crate::storage::token_hash
    pub async fn revoke(&self, token: &str) -> ManagerResult<String> {
        let (hash, exp) = self
            .revoke_here(token)
            .map_err(|e| ManagerError::InvalidArgument(format!("Invalid token: {e}")))?;
        self.store
            .revoke_token(&hash, exp as i64)
            .await
            .map_err(|e| ManagerError::Store(format!("could not persist the revocation: {e}")))?;
        Ok(hash)
    }

    fn revoke_here(&self, token: &str) -> Result<(String, u64), TokenError> {
        if self.root_token.as_deref() == Some(token.trim()) {
            return Err(TokenError::Invalid(
                "the root token cannot be revoked".into(),
            ));
        }
        let user = self.verify(token)?;
        let now = now_secs();
        let exp = user
            .expires_at
            .map(|e| e as u64)
            .unwrap_or(now + 365 * 24 * 3600);
        self.revoked.retain(|_, e| *e > now);
        let hash = crate::storage::token_hash(token.trim());
        self.revoked.insert(hash.clone(), exp);
        Ok((hash, exp))
    }

    /// A revocation another node announced (issue 10 stage B): the token with SHA-256
    /// hex `hash` is refused here too until `exp` (unix seconds). Not written to the store:
    /// the announcing node did (with a shared database it is already there).
    pub fn note_revoked(&self, hash: &str, exp: u64) {
        let now = now_secs();
        if exp > now {
            self.revoked.retain(|_, e| *e > now);
            self.revoked.insert(hash.to_owned(), exp);
        }
    }

    /// Until when the token with SHA-256 hex `hash` is revoked (unix seconds), if it is.
    pub fn revoked_until(&self, hash: &str) -> Option<u64> {
        self.revoked.get(hash).map(|e| *e)
    }

    /// Restores the revocations and blocks still in force from the store; returns how
    /// many revocations. Call once at start, before serving. Errors: the store could not
    /// be read.
    pub async fn load(&self) -> Result<usize, StoreError> {
        self.blocklist.load().await?;
        let revocations = self
            .store
            .list_revocations(crate::storage::now_unix())
            .await?;
        let n = revocations.len();
        for (hash, exp) in revocations {
            self.revoked.insert(hash, exp.max(0) as u64);
        }
        Ok(n)
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Signs and verifies tokens with one shared secret, and keeps the revocations.
pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    format: ClaimFormat,
    root_token: Option<String>,
    /// SHA-256 hex of revoked tokens → their expiry (seconds since the epoch).
    revoked: dashmap::DashMap<String, u64>,
    /// Where revocations are written (and read at start).
    store: Arc<dyn Store>,
    /// Blocked users (refused by [`TokenService::verify`]) and addresses.
    blocklist: crate::blocklist::Blocklist,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

// === impl TokenService ===

impl TokenService {
    /// A service signing with `secret`; `root_token` (opaque string) maps to the root user;
    /// revocations are kept in `store` (call [`TokenService::load`] before serving).
    pub fn new(
        secret: &str,
        format: ClaimFormat,
        root_token: Option<String>,
        store: Arc<dyn Store>,
    ) -> Self {
        TokenService {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            format,
            root_token: root_token.filter(|t| !t.is_empty()),
            revoked: dashmap::DashMap::new(),
            blocklist: crate::blocklist::Blocklist::new(store.clone()),
            store,
        }
    }

    /// The blocked users and addresses ([`crate::blocklist`]).
    pub fn blocklist(&self) -> &crate::blocklist::Blocklist {
        &self.blocklist
    }

    /// A JWT for `user`, valid `expires_in` seconds.
    pub fn sign(&self, user: &UserInfo, expires_in: u64) -> String {
        self.sign_descendant(user, expires_in, None)
    }

    /// A JWT for `user`, valid `expires_in` seconds, that descends from the token with
    /// SHA-256 hex `origin` (claim [`ORIGIN_CLAIM`]): revoking that token revokes this one.
    /// Used for reconnection tokens.
    pub fn sign_descendant(
        &self,
        user: &UserInfo,
        expires_in: u64,
        origin: Option<&str>,
    ) -> String {
        let mut claims = self.format.claims(user, now_secs(), expires_in);
        if let (Some(o), Some(m)) = (origin, claims.as_object_mut()) {
            m.insert(ORIGIN_CLAIM.into(), o.into());
        }
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// Verifies a token: the root token (exact match, whitespace trimmed) or a JWT signed
    /// with our secret, issuer and audience, neither revoked nor descending from a revoked
    /// token.
    pub fn verify(&self, token: &str) -> Result<UserInfo, TokenError> {
        self.verify_with_origin(token).map(|(user, _)| user)
    }

    /// [`TokenService::verify`], also returning the token's origin: the SHA-256 hex of the
    /// token itself, or of the token it descends from. `None` for the root token.
    pub fn verify_with_origin(
        &self,
        token: &str,
    ) -> Result<(UserInfo, Option<String>), TokenError> {
        let token = token.trim();
        if let Some(root) = &self.root_token {
            if token == root {
                return Ok((UserInfo::root(), None));
            }
        }
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&[&self.format.audience]);
        v.set_issuer(&[&self.format.issuer]);
        v.leeway = 0;
        let hash = crate::storage::token_hash(token);
        if self.is_revoked(&hash) {
            return Err(TokenError::Revoked);
        }
        let data =
            decode::<serde_json::Value>(token, &self.decoding, &v).map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })?;
        let origin = match data.claims.get(ORIGIN_CLAIM).and_then(|o| o.as_str()) {
            Some(o) if self.is_revoked(o) => return Err(TokenError::Revoked),
            Some(o) => o.to_owned(),
            None => hash,
        };
        let user = self
            .format
            .user(&data.claims)
            .map_err(TokenError::Invalid)?;
        if let Some(reason) = self.blocklist.user(&user.id) {
            return Err(TokenError::Blocked(reason));
        }
        Ok((user, Some(origin)))
    }

    /// Whether the token with SHA-256 hex `hash` was revoked.
    pub fn is_revoked(&self, hash: &str) -> bool {
        !self.revoked.is_empty() && self.revoked.contains_key(hash)
    }
}

/// Private claim of reconnection tokens: SHA-256 hex of the token the session started
/// with. Other servers ignore it; rhizo refuses the token once that origin is revoked.
pub const ORIGIN_CLAIM: &str = "rhizo_origin";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStore;
    use rhizo_protocol::token::parse_scope;

    fn service(secret: &str, root: Option<String>) -> TokenService {
        TokenService::new(
            secret,
            ClaimFormat::default(),
            root,
            Arc::new(MemoryStore::new()),
        )
    }

    #[test]
    fn sign_verify_and_refuse() {
        let t = service("s3cret", Some("r".repeat(40)));
        let mut u = UserInfo::root();
        u.id = "u1".into();
        u.roles = vec![];
        u.scope = parse_scope("ws:ws-a#rw wid:ws-a");
        let tok = t.sign(&u, 60);
        let back = t.verify(&tok).unwrap();
        assert_eq!(back.id, "u1");
        assert_eq!(back.scope.current_workspace.as_deref(), Some("ws-a"));
        let other = service("other", None);
        assert!(matches!(other.verify(&tok), Err(TokenError::Invalid(_))));
        assert!(matches!(t.verify("not-a-jwt"), Err(TokenError::Invalid(_))));
        assert_eq!(t.verify(&"r".repeat(40)).unwrap().id, "root");
    }

    #[tokio::test]
    async fn revoking_a_token_revokes_its_descendants() {
        let t = service("s", None);
        let mut u = UserInfo::root();
        u.id = "u1".into();
        u.roles = vec![];
        let first = t.sign(&u, 60);
        let (_, origin) = t.verify_with_origin(&first).unwrap();
        let origin = origin.unwrap();
        assert_eq!(origin, crate::storage::token_hash(&first));
        let child = t.sign_descendant(&u, 60, Some(&origin));
        let grandchild = {
            let (_, o) = t.verify_with_origin(&child).unwrap();
            assert_eq!(o.as_deref(), Some(origin.as_str()));
            t.sign_descendant(&u, 60, o.as_deref())
        };
        assert_eq!(t.revoke(&first).await.unwrap(), origin);
        assert_eq!(t.verify(&first), Err(TokenError::Revoked));
        assert_eq!(t.verify(&child), Err(TokenError::Revoked));
        assert_eq!(t.verify(&grandchild), Err(TokenError::Revoked));
        // An unrelated token of the same user (another expiry, so other bytes) still works.
        assert!(t.verify(&t.sign(&u, 61)).is_ok());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let t = service("s", None);
        let claims = ClaimFormat::default().claims(&UserInfo::root(), now_secs() - 100, 10);
        let tok = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"s"),
        )
        .unwrap();
        assert_eq!(t.verify(&tok), Err(TokenError::Expired));
    }
}
