//! `public/hypha-login` (workspace-api.md §9.1): the log-in flow the hypha-rpc clients'
//! `login()` runs, plus local accounts when `--enable-local-auth` is on.
//!
//! `login()` connects, calls `start()` (→ `{login_url, key, report_url, check_url,
//! generate_url}`), shows `login_url` to the person, then waits in `check(key, timeout,
//! profile)` until the page `report`s a token for that key. The page gets the token by a
//! local log-in (e-mail + password, [`LoginService::local_login`]) or from a token the
//! person pastes. `report` never trusts what it is handed: the token must verify (the
//! server's signature, not expired, not revoked) and, when a workspace is asked for, the
//! user must have at least `r` there; the client then gets a new token scoped to that
//! workspace (default lifetime 3600 s), as the reference does.

use crate::keys::{KeyError, LoginKeys, Reported};
use crate::password;
use crate::users::{normalize_email, UserRecord, UserStore, UserStoreError};
use rhizo_control_plane::manager::Ctx;
use rhizo_control_plane::service::{BoxFuture, ControlService, FunctionSpec, ServiceHost};
use rhizo_control_plane::{ManagerError, ManagerResult};
use rhizo_protocol::user::{Permission, ScopeInfo, UserInfo};
use rmpv::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

/// The service id inside `public`.
pub const SERVICE_ID: &str = "hypha-login";
/// Path of the log-in page (also served at `/login`).
pub const PAGE_PATH: &str = "/public/apps/hypha-login/";
/// `check`'s default wait, in seconds (the reference's `MAXIMUM_LOGIN_TIME`).
pub const DEFAULT_CHECK_TIMEOUT_SECS: f64 = 180.0;
/// Lifetime of the tokens minted here when none is asked for, in seconds.
pub const DEFAULT_TOKEN_LIFETIME_SECS: u64 = 3600;
/// Longest token lifetime a log-in may ask for, in seconds (30 days).
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 30 * 24 * 3600;
/// How often a waiting `check` looks for the report.
const CHECK_POLL: Duration = Duration::from_millis(200);

const BASE_FUNCTIONS: &[FunctionSpec] = &[
    FunctionSpec {
        name: "start",
        params: &[("workspace", true), ("expires_in", true)],
        doc: "Starts a log-in: {login_url, key, report_url, check_url, generate_url}.",
    },
    FunctionSpec {
        name: "check",
        params: &[("key", false), ("timeout", true), ("profile", true)],
        doc: "Waits up to timeout s (default 180) for the log-in of key; the token, or the profile when profile is true.",
    },
    FunctionSpec {
        name: "report",
        params: &[
            ("key", false),
            ("token", false),
            ("workspace", true),
            ("expires_in", true),
            ("email", true),
            ("email_verified", true),
            ("name", true),
            ("nickname", true),
            ("user_id", true),
            ("picture", true),
        ],
        doc: "Reports the token of a finished log-in for key (validated, scoped to workspace when given).",
    },
    FunctionSpec {
        name: "profile",
        params: &[("config", true)],
        doc: "The URL of the profile page: {profile_url}.",
    },
    FunctionSpec {
        name: "logout",
        params: &[("config", true)],
        doc: "The URL that ends the browser's log-in: {logout_url}.",
    },
];

const LOCAL_FUNCTIONS: &[FunctionSpec] = &[
    BASE_FUNCTIONS[0],
    BASE_FUNCTIONS[1],
    BASE_FUNCTIONS[2],
    BASE_FUNCTIONS[3],
    BASE_FUNCTIONS[4],
    FunctionSpec {
        name: "signup",
        params: &[("email", false), ("password", false), ("name", true)],
        doc: "Creates a local account: {success, user_id, email}.",
    },
    FunctionSpec {
        name: "login",
        params: &[
            ("email", false),
            ("password", false),
            ("workspace", true),
            ("key", true),
            ("expires_in", true),
        ],
        doc: "Logs in a local account: {success, token, user_id, email, workspace}; reports the token for key when given.",
    },
];

/// What a report carries besides key and token (workspace-api.md §9.1).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ReportExtras {
    /// Scope the token to this workspace.
    pub workspace: Option<String>,
    /// Lifetime of the scoped token, seconds.
    pub expires_in: Option<u64>,
    /// Profile fields passed through to `check(profile=True)`.
    pub email: Option<String>,
    /// See [`Reported::email_verified`].
    pub email_verified: Option<bool>,
    /// See [`Reported::name`].
    pub name: Option<String>,
    /// See [`Reported::nickname`].
    pub nickname: Option<String>,
    /// See [`Reported::user_id`] (ignored: the token's user id wins).
    pub user_id: Option<String>,
    /// See [`Reported::picture`].
    pub picture: Option<String>,
}

/// The result of a local log-in.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LocalLogin {
    /// Always true (failures are errors).
    pub success: bool,
    /// The token (scoped to `workspace` when one was asked for).
    pub token: String,
    /// The account's user id.
    pub user_id: String,
    /// The account's e-mail.
    pub email: String,
    /// The workspace the token is for: the asked one, else the personal `ws-user-<id>`.
    pub workspace: String,
}

/// The `public/hypha-login` service.
pub struct LoginService {
    keys: LoginKeys,
    /// Local accounts; `None` unless `--enable-local-auth`.
    users: Option<UserStore>,
    host: OnceLock<Arc<dyn ServiceHost>>,
    me: Weak<LoginService>,
}

impl std::fmt::Debug for LoginService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginService")
            .field("keys", &self.keys)
            .field("local_auth", &self.users.is_some())
            .finish()
    }
}

/// The permission `user` gets on `workspace` for a scoped log-in token: the user's own
/// (explicit grants, `*`, the personal workspace) or admin as one of the workspace's
/// `owners` (id or e-mail) — workspace-api.md §1.3.
///
/// Errors: a [`ManagerError::Permission`] when the user has none of these (at least `r`
/// is needed, §9.1).
pub fn login_permission(
    user: &UserInfo,
    workspace: &str,
    owners: Option<&[String]>,
) -> ManagerResult<Permission> {
    if let Some(p) = user.permission(workspace) {
        return Ok(p);
    }
    let owner = owners.is_some_and(|o| {
        o.iter()
            .any(|x| *x == user.id || user.email.as_deref() == Some(x.as_str()))
    });
    if owner {
        return Ok(Permission::Admin);
    }
    Err(ManagerError::Permission(format!(
        "user {} has no permission on workspace {workspace}",
        user.id
    )))
}

/// `user` narrowed to `workspace` with `permission`, as the scoped log-in token carries
/// it (scope `ws:<workspace>#<p> wid:<workspace>`).
pub fn scoped_user(user: &UserInfo, workspace: &str, permission: Permission) -> UserInfo {
    let mut scoped = user.clone();
    scoped.scope = ScopeInfo {
        current_workspace: Some(workspace.to_owned()),
        workspaces: BTreeMap::from([(workspace.to_owned(), permission)]),
        client_id: None,
        extra_scopes: Vec::new(),
    };
    scoped.current_workspace = Some(workspace.to_owned());
    scoped.expires_at = None;
    scoped
}

/// A token for `user` scoped to `workspace` (see [`scoped_user`]), valid `lifetime` s.
/// The permission is checked before the workspace is looked up, so that a refusal does
/// not tell whether someone else's workspace exists.
///
/// Errors: no permission ([`ManagerError::Permission`]); a workspace that is neither
/// loaded nor the user's personal one ([`ManagerError::NotFound`]).
fn scoped_token(
    host: &dyn ServiceHost,
    user: &UserInfo,
    workspace: &str,
    lifetime: u64,
) -> ManagerResult<String> {
    let info = host.workspace(workspace);
    let p = login_permission(user, workspace, info.as_ref().map(|w| w.owners.as_slice()))?;
    if info.is_none() && workspace != user.personal_workspace() {
        return Err(ManagerError::NotFound(format!(
            "workspace {workspace} does not exist"
        )));
    }
    Ok(host.sign_token(&scoped_user(user, workspace, p), lifetime))
}

fn key_error(e: KeyError) -> ManagerError {
    match e {
        KeyError::Unknown => ManagerError::NotFound(e.to_string()),
        KeyError::Full => ManagerError::Quota(e.to_string()),
    }
}

fn store_error(e: UserStoreError) -> ManagerError {
    match e {
        UserStoreError::Duplicate => ManagerError::InvalidArgument(e.to_string()),
        UserStoreError::Store(e) => {
            tracing::warn!("local accounts: {e}");
            ManagerError::Store("the account database failed".into())
        }
    }
}

fn lifetime(expires_in: Option<u64>) -> ManagerResult<u64> {
    match expires_in {
        None => Ok(DEFAULT_TOKEN_LIFETIME_SECS),
        Some(0) => Err(ManagerError::InvalidArgument(
            "expires_in must be a positive number of seconds".into(),
        )),
        Some(s) if s > MAX_TOKEN_LIFETIME_SECS => Err(ManagerError::InvalidArgument(format!(
            "expires_in must be at most {MAX_TOKEN_LIFETIME_SECS} seconds"
        ))),
        Some(s) => Ok(s),
    }
}

fn plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.contains(char::is_whitespace)
        && email.len() <= 254
}

// === impl LoginService ===

impl LoginService {
    /// The service; `users` holds the local accounts when `--enable-local-auth` is on.
    pub fn new(users: Option<UserStore>) -> Arc<Self> {
        Arc::new_cyclic(|me| LoginService {
            keys: LoginKeys::default(),
            users,
            host: OnceLock::new(),
            me: me.clone(),
        })
    }

    /// True if local accounts are on.
    pub fn local_auth(&self) -> bool {
        self.users.is_some()
    }

    fn host(&self) -> ManagerResult<&Arc<dyn ServiceHost>> {
        self.host
            .get()
            .ok_or_else(|| ManagerError::Internal("the log-in service is not attached".into()))
    }

    fn users(&self) -> ManagerResult<&UserStore> {
        self.users.as_ref().ok_or_else(|| {
            ManagerError::Permission(
                "local accounts are disabled on this server (start it with --enable-local-auth); \
                 log in with a token instead"
                    .into(),
            )
        })
    }

    /// The page URL (`<public base>/public/apps/hypha-login/`).
    pub fn page_url(&self) -> ManagerResult<String> {
        Ok(format!("{}{PAGE_PATH}", self.host()?.public_base_url()))
    }

    /// `start(workspace, expires_in)`: a new login key and the URLs around it.
    ///
    /// Errors: too many log-ins pending ([`ManagerError::Quota`]).
    pub fn start(
        &self,
        workspace: Option<&str>,
        expires_in: Option<u64>,
    ) -> ManagerResult<serde_json::Value> {
        let key = self.keys.create(Instant::now()).map_err(key_error)?;
        let base = self.host()?.public_base_url();
        let mut login_url = format!("{base}{PAGE_PATH}?key={key}");
        if let Some(w) = workspace {
            login_url.push_str(&format!("&workspace={w}"));
        }
        if let Some(e) = expires_in {
            login_url.push_str(&format!("&expires_in={e}"));
        }
        let svc = format!("{base}/public/services/{SERVICE_ID}");
        Ok(serde_json::json!({
            "login_url": login_url,
            "key": key,
            "report_url": format!("{base}{PAGE_PATH}api/report"),
            "check_url": format!("{svc}/check"),
            "generate_url": format!("{svc}/generate"),
        }))
    }

    /// `check(key, timeout, profile)`: waits up to `timeout` seconds for the report of
    /// `key`, polling every 200 ms; `timeout <= 0` looks once and answers `None` if
    /// there is no report yet. The key is consumed by a successful check.
    ///
    /// Errors: an unknown, consumed or expired key ([`ManagerError::NotFound`]); no
    /// report within `timeout` ([`ManagerError::Timeout`], the key stays valid).
    pub async fn check(&self, key: &str, timeout: f64) -> ManagerResult<Option<Reported>> {
        let deadline = Instant::now() + Duration::from_secs_f64(timeout.clamp(0.0, 86_400.0));
        loop {
            if let Some(r) = self.keys.take(key, Instant::now()).map_err(key_error)? {
                return Ok(Some(r));
            }
            if timeout <= 0.0 {
                return Ok(None);
            }
            if Instant::now() >= deadline {
                return Err(ManagerError::Timeout(format!(
                    "nobody logged in with this key within {timeout} s"
                )));
            }
            tokio::time::sleep(CHECK_POLL).await;
        }
    }

    /// `report(key, token, …)`: validates `token` and records it for `key`, scoped to
    /// `extras.workspace` when given. Answers the token stored.
    ///
    /// Errors: a token that does not verify (forged, expired, revoked) or is anonymous,
    /// or a user without `r` on the workspace ([`ManagerError::Permission`]); an unknown
    /// or expired key ([`ManagerError::NotFound`]); a bad `expires_in`.
    pub async fn report(
        &self,
        key: &str,
        token: &str,
        extras: ReportExtras,
    ) -> ManagerResult<String> {
        let host = self.host()?;
        // Fail on a dead key before doing any work for it.
        self.keys.take(key, Instant::now()).map_err(key_error)?;
        let user = host
            .caller(Some(token.trim()), "public")
            .map_err(|e| match e {
                ManagerError::Permission(m) => {
                    ManagerError::Permission(format!("the reported token is not valid: {m}"))
                }
                other => other,
            })?
            .user;
        if user.is_anonymous {
            return Err(ManagerError::Permission(
                "an anonymous token cannot complete a log-in".into(),
            ));
        }
        let token = match extras.workspace.as_deref().filter(|w| !w.is_empty()) {
            None => token.trim().to_owned(),
            Some(ws) => scoped_token(host.as_ref(), &user, ws, lifetime(extras.expires_in)?)?,
        };
        let reported = Reported {
            token: token.clone(),
            workspace: extras.workspace,
            expires_in: extras.expires_in,
            email: extras.email.or(user.email.clone()),
            email_verified: extras.email_verified,
            name: extras.name,
            nickname: extras.nickname,
            user_id: Some(user.id.clone()),
            picture: extras.picture,
        };
        self.keys
            .report(key, reported, Instant::now())
            .map_err(key_error)?;
        Ok(token)
    }

    /// Creates a local account for `email` with `password`; answers `(user_id, email)`.
    ///
    /// Errors: local accounts disabled ([`ManagerError::Permission`]); a malformed
    /// e-mail, a weak password or an e-mail already registered
    /// ([`ManagerError::InvalidArgument`]).
    pub async fn signup(
        &self,
        email: &str,
        password: &str,
        name: Option<&str>,
    ) -> ManagerResult<(String, String)> {
        let users = self.users()?;
        let email = normalize_email(email);
        if !plausible_email(&email) {
            return Err(ManagerError::InvalidArgument(
                "enter a valid e-mail address (name@example.org)".into(),
            ));
        }
        password::check_strength(password)
            .map_err(|e| ManagerError::InvalidArgument(e.to_string()))?;
        let phc = tokio::task::spawn_blocking({
            let p = password.to_owned();
            move || password::hash(&p)
        })
        .await
        .map_err(|e| ManagerError::Internal(e.to_string()))?;
        let record = UserRecord {
            id: format!("u{:016x}", rand::random::<u64>()),
            email: email.clone(),
            name: name
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(Into::into),
            password_hash: phc,
            created_at: rhizo_control_plane::storage::now_unix(),
        };
        users.insert(&record).await.map_err(store_error)?;
        tracing::info!(user = %record.id, "local account created");
        Ok((record.id, email))
    }

    /// Logs in the local account `email`: checks `password`, mints a token (scoped to
    /// `workspace` when given, valid `expires_in` s, default 3600) and, with `key`,
    /// reports it for that pending `login()`.
    ///
    /// Errors: local accounts disabled, or a wrong e-mail or password — one message for
    /// both, so the answer does not tell whether the account exists
    /// ([`ManagerError::Permission`]); no `r` on `workspace`; an unknown or expired key.
    pub async fn local_login(
        &self,
        email: &str,
        password: &str,
        workspace: Option<&str>,
        key: Option<&str>,
        expires_in: Option<u64>,
    ) -> ManagerResult<LocalLogin> {
        let users = self.users()?;
        let host = self.host()?;
        let lifetime = lifetime(expires_in)?;
        if let Some(k) = key {
            self.keys.take(k, Instant::now()).map_err(key_error)?;
        }
        let found = users
            .by_email(&normalize_email(email))
            .await
            .map_err(store_error)?;
        let phc = found
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| password::dummy_hash().to_owned());
        let ok = tokio::task::spawn_blocking({
            let p = password.to_owned();
            move || password::verify(&p, &phc)
        })
        .await
        .map_err(|e| ManagerError::Internal(e.to_string()))?;
        let account = match found {
            Some(u) if ok => u,
            _ => {
                return Err(ManagerError::Permission(
                    "incorrect e-mail or password".into(),
                ))
            }
        };
        let user = UserInfo {
            id: account.id.clone(),
            roles: Vec::new(),
            is_anonymous: false,
            scope: ScopeInfo::default(),
            email: Some(account.email.clone()),
            parent: None,
            expires_at: None,
            current_workspace: None,
        };
        let (token, ws) = match workspace.filter(|w| !w.is_empty()) {
            None => (host.sign_token(&user, lifetime), user.personal_workspace()),
            Some(ws) => (
                scoped_token(host.as_ref(), &user, ws, lifetime)?,
                ws.to_owned(),
            ),
        };
        if token.is_empty() {
            return Err(ManagerError::Internal("the server is shutting down".into()));
        }
        if let Some(k) = key {
            let reported = Reported {
                token: token.clone(),
                workspace: workspace.map(Into::into),
                expires_in: Some(lifetime),
                email: Some(account.email.clone()),
                email_verified: Some(false),
                name: account.name.clone(),
                nickname: account.name.clone(),
                user_id: Some(account.id.clone()),
                picture: None,
            };
            self.keys
                .report(k, reported, Instant::now())
                .map_err(key_error)?;
        }
        Ok(LocalLogin {
            success: true,
            token,
            user_id: account.id,
            email: account.email,
            workspace: ws,
        })
    }

    /// `logout(config)`: `{logout_url}`, the page that forgets the browser's log-in.
    pub fn logout(&self) -> ManagerResult<serde_json::Value> {
        Ok(serde_json::json!({ "logout_url": format!("{}?logout=1", self.page_url()?) }))
    }

    /// `profile(config)`: `{profile_url}`, the page showing who is logged in.
    pub fn profile(&self) -> ManagerResult<serde_json::Value> {
        Ok(serde_json::json!({ "profile_url": format!("{}?profile=1", self.page_url()?) }))
    }
}

fn opt_str(v: &Value) -> ManagerResult<Option<String>> {
    match v {
        Value::Nil => Ok(None),
        Value::String(s) => Ok(s.as_str().map(str::to_owned)),
        _ => Err(ManagerError::BadCall("expected a string".into())),
    }
}

fn req_str(v: &Value, name: &str) -> ManagerResult<String> {
    opt_str(v)?.ok_or_else(|| ManagerError::BadCall(format!("{name} must be a string")))
}

fn opt_u64(v: &Value, name: &str) -> ManagerResult<Option<u64>> {
    match v {
        Value::Nil => Ok(None),
        v => match v.as_u64().or_else(|| {
            v.as_f64()
                .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                .map(|f| f as u64)
        }) {
            Some(n) => Ok(Some(n)),
            None => Err(ManagerError::InvalidArgument(format!(
                "{name} must be a whole number of seconds"
            ))),
        },
    }
}

fn to_value(v: serde_json::Value) -> Value {
    rhizo_protocol::value::from_json(&v)
}

fn profile_value(r: &Reported) -> Value {
    to_value(serde_json::json!({
        "token": r.token,
        "workspace": r.workspace,
        "expires_in": r.expires_in,
        "email": r.email,
        "email_verified": r.email_verified,
        "name": r.name,
        "nickname": r.nickname,
        "user_id": r.user_id,
        "picture": r.picture,
    }))
}

impl ControlService for LoginService {
    fn id(&self) -> &'static str {
        SERVICE_ID
    }

    fn name(&self) -> &str {
        "Hypha Login"
    }

    fn description(&self) -> &str {
        "Log in to the server and hand the token to a waiting client (login())."
    }

    fn service_type(&self) -> &str {
        "functions"
    }

    fn functions(&self) -> &'static [FunctionSpec] {
        if self.local_auth() {
            LOCAL_FUNCTIONS
        } else {
            BASE_FUNCTIONS
        }
    }

    fn attach(&self, host: Arc<dyn ServiceHost>) {
        let _ = self.host.set(host);
    }

    fn routes(&self) -> Option<axum::Router> {
        self.me.upgrade().map(crate::http::routes)
    }

    fn call<'a>(
        &'a self,
        _ctx: &'a Ctx,
        function: &'a str,
        args: Vec<Value>,
    ) -> BoxFuture<'a, ManagerResult<Value>> {
        Box::pin(async move {
            match function {
                "start" => Ok(to_value(self.start(
                    opt_str(&args[0])?.as_deref(),
                    opt_u64(&args[1], "expires_in")?,
                )?)),
                "check" => {
                    let key = req_str(&args[0], "key")?;
                    let timeout = match &args[1] {
                        Value::Nil => DEFAULT_CHECK_TIMEOUT_SECS,
                        v => v.as_f64().ok_or_else(|| {
                            ManagerError::InvalidArgument("timeout must be a number".into())
                        })?,
                    };
                    let profile = args[2].as_bool().unwrap_or(false);
                    Ok(match self.check(&key, timeout).await? {
                        None => Value::Nil,
                        Some(r) if profile => profile_value(&r),
                        Some(r) => Value::from(r.token),
                    })
                }
                "report" => {
                    let key = req_str(&args[0], "key")?;
                    let token = req_str(&args[1], "token")?;
                    let extras = ReportExtras {
                        workspace: opt_str(&args[2])?,
                        expires_in: opt_u64(&args[3], "expires_in")?,
                        email: opt_str(&args[4])?,
                        email_verified: args[5].as_bool(),
                        name: opt_str(&args[6])?,
                        nickname: opt_str(&args[7])?,
                        user_id: opt_str(&args[8])?,
                        picture: opt_str(&args[9])?,
                    };
                    self.report(&key, &token, extras).await?;
                    Ok(Value::Nil)
                }
                "profile" => Ok(to_value(self.profile()?)),
                "logout" => Ok(to_value(self.logout()?)),
                "signup" => {
                    let (user_id, email) = self
                        .signup(
                            &req_str(&args[0], "email")?,
                            &req_str(&args[1], "password")?,
                            opt_str(&args[2])?.as_deref(),
                        )
                        .await?;
                    Ok(to_value(serde_json::json!({
                        "success": true, "user_id": user_id, "email": email,
                    })))
                }
                "login" => {
                    let r = self
                        .local_login(
                            &req_str(&args[0], "email")?,
                            &req_str(&args[1], "password")?,
                            opt_str(&args[2])?.as_deref(),
                            opt_str(&args[3])?.as_deref(),
                            opt_u64(&args[4], "expires_in")?,
                        )
                        .await?;
                    Ok(to_value(
                        serde_json::to_value(r).expect("a log-in result serialises"),
                    ))
                }
                other => Err(ManagerError::MethodNotFound(format!(
                    "{SERVICE_ID}.{other}"
                ))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, grants: &[(&str, Permission)]) -> UserInfo {
        UserInfo {
            id: id.into(),
            roles: vec![],
            is_anonymous: false,
            scope: ScopeInfo {
                workspaces: grants.iter().map(|(w, p)| (w.to_string(), *p)).collect(),
                ..Default::default()
            },
            email: Some(format!("{id}@example.org")),
            parent: None,
            expires_at: None,
            current_workspace: None,
        }
    }

    #[test]
    fn the_login_permission_follows_grants_and_ownership() {
        let alice = user("alice", &[("ws-team", Permission::Read)]);
        assert_eq!(
            login_permission(&alice, "ws-user-alice", None).unwrap(),
            Permission::Admin
        );
        assert_eq!(
            login_permission(&alice, "ws-team", None).unwrap(),
            Permission::Read
        );
        let err = login_permission(&alice, "ws-other", Some(&["bob".into()])).unwrap_err();
        assert!(matches!(&err, ManagerError::Permission(m) if m.contains("ws-other")));
        assert_eq!(
            login_permission(&alice, "ws-other", Some(&["alice@example.org".into()])).unwrap(),
            Permission::Admin,
            "owners may be named by e-mail"
        );
        let star = user("carol", &[("*", Permission::ReadWrite)]);
        assert_eq!(
            login_permission(&star, "anything", None).unwrap(),
            Permission::ReadWrite
        );
    }

    #[test]
    fn scoped_users_carry_exactly_one_workspace() {
        let alice = user(
            "alice",
            &[("ws-team", Permission::Read), ("*", Permission::Admin)],
        );
        let s = scoped_user(&alice, "ws-team", Permission::Read);
        assert_eq!(s.scope.workspaces.len(), 1);
        assert_eq!(s.scope.workspaces["ws-team"], Permission::Read);
        assert_eq!(s.scope.current_workspace.as_deref(), Some("ws-team"));
        assert!(
            !s.can("ws-elsewhere", Permission::Read),
            "the * grant is gone"
        );
        assert_eq!(s.email, alice.email);
    }

    #[test]
    fn lifetimes_and_emails_are_checked() {
        assert_eq!(lifetime(None).unwrap(), DEFAULT_TOKEN_LIFETIME_SECS);
        assert!(lifetime(Some(0)).is_err());
        assert!(lifetime(Some(MAX_TOKEN_LIFETIME_SECS + 1)).is_err());
        assert_eq!(lifetime(Some(60)).unwrap(), 60);
        assert!(plausible_email("a@b.org"));
        assert!(!plausible_email("ab.org"));
        assert!(!plausible_email("@b.org"));
        assert!(!plausible_email("a@"));
        assert!(!plausible_email("a b@c.org"));
    }

    #[tokio::test]
    async fn without_local_auth_signup_and_login_are_refused() {
        let svc = LoginService::new(None);
        let err = svc.signup("a@b.org", "hunter2!x", None).await.unwrap_err();
        assert!(matches!(&err, ManagerError::Permission(m) if m.contains("--enable-local-auth")));
        assert_eq!(svc.functions().len(), 5);
        assert!(
            LoginService::new(Some(UserStore::memory()))
                .functions()
                .len()
                == 7
        );
    }

    #[tokio::test]
    async fn check_times_out_and_rejects_unknown_keys() {
        let svc = LoginService::new(None);
        let key = svc.keys.create(Instant::now()).unwrap();
        assert_eq!(svc.check(&key, 0.0).await.unwrap(), None);
        let t0 = Instant::now();
        let err = svc.check(&key, 0.3).await.unwrap_err();
        assert!(matches!(err, ManagerError::Timeout(_)), "{err:?}");
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert!(matches!(
            svc.check("0123", 0.0).await.unwrap_err(),
            ManagerError::NotFound(_)
        ));
    }
}
