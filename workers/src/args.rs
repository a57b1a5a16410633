//! The arguments of an incoming worker call as hypha-rpc callers send them — positional,
//! keyword (`with_kwargs`), or both — and the trusted identity of the caller.
//!
//! A worker function such as `get_logs(session_id, type=None, offset=0, limit=None,
//! context=None)` is called as `get_logs("ws/c")`, `get_logs("ws/c", "stdout")` or
//! `get_logs(session_id="ws/c", type="stdout")`; [`Args::get`] looks a parameter up by name
//! first and by position second, and treats nil as absent. A trailing `context` (keyword or
//! positional map) is never read: the caller's identity comes from the frame header the
//! server stamped ([`Caller`]), not from anything the caller wrote.

use crate::error::{WorkerError, WorkerResult};
use rhizo_protocol::message::Call;
use rhizo_protocol::user::{Permission, UserInfo};
use rhizo_protocol::value::to_json;
use rmpv::Value;

/// The arguments of one call, with the function's name for error messages.
#[derive(Debug)]
pub(crate) struct Args<'a> {
    function: &'static str,
    call: &'a Call,
}

impl<'a> Args<'a> {
    /// Reads `call`'s arguments for `function` (used in error messages only).
    pub(crate) fn new(function: &'static str, call: &'a Call) -> Self {
        Args { function, call }
    }

    /// Parameter `name`, or else positional parameter `index`; nil counts as absent.
    pub(crate) fn get(&self, index: usize, name: &str) -> Option<&'a Value> {
        let kw = self
            .call
            .kwargs
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v);
        kw.or_else(|| self.call.args.get(index))
            .filter(|v| !v.is_nil())
    }

    /// A required string parameter.
    ///
    /// Errors: [`WorkerError::Argument`] naming the function and the parameter.
    pub(crate) fn str(&self, index: usize, name: &str) -> WorkerResult<&'a str> {
        match self.get(index, name) {
            Some(v) => v.as_str().ok_or_else(|| {
                WorkerError::Argument(format!(
                    "{}(): '{name}' must be a string, got {v}",
                    self.function
                ))
            }),
            None => Err(WorkerError::Argument(format!(
                "{}() missing required argument: '{name}'",
                self.function
            ))),
        }
    }

    /// An optional string parameter (absent or nil → `None`).
    ///
    /// Errors: [`WorkerError::Argument`] if it is present but not a string.
    pub(crate) fn opt_str(&self, index: usize, name: &str) -> WorkerResult<Option<&'a str>> {
        match self.get(index, name) {
            None => Ok(None),
            Some(_) => self.str(index, name).map(Some),
        }
    }

    /// An optional non-negative integer parameter.
    ///
    /// Errors: [`WorkerError::Argument`] if it is present but not a non-negative integer.
    pub(crate) fn opt_usize(&self, index: usize, name: &str) -> WorkerResult<Option<usize>> {
        match self.get(index, name) {
            None => Ok(None),
            Some(v) => number(v)
                .filter(|n| *n >= 0.0 && n.fract() == 0.0)
                .map(|n| Some(n as usize))
                .ok_or_else(|| {
                    WorkerError::Argument(format!(
                        "{}(): '{name}' must be a non-negative integer, got {v}",
                        self.function
                    ))
                }),
        }
    }

    /// The caller of this call.
    pub(crate) fn caller(&self) -> Caller {
        Caller::of(self.call)
    }
}

/// An integer or float as `f64`.
pub(crate) fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => i.as_f64(),
        Value::F32(f) => Some(f64::from(*f)),
        Value::F64(f) => Some(*f),
        _ => None,
    }
}

// === impl Args (the worker protocol's common arguments) ===

impl Args<'_> {
    /// `start(config)`'s WorkerConfig (§3.3), which the caller must be allowed to use.
    ///
    /// Errors: no `config`, a malformed one, or a caller from another workspace.
    pub(crate) fn start_config(&self) -> WorkerResult<crate::config::WorkerConfig> {
        let caller = self.caller();
        let raw = self.get(0, "config").ok_or_else(|| {
            WorkerError::Argument("start() missing required argument: 'config'".into())
        })?;
        let config = crate::config::WorkerConfig::parse(raw, &caller.ws)?;
        caller.check(&config.id, &config.workspace)?;
        Ok(config)
    }

    /// `list_sessions(workspace=None)`'s workspace: the argument, else the caller's; the
    /// caller must be allowed to use it.
    ///
    /// Errors: a non-string `workspace`, or a caller from another workspace.
    pub(crate) fn listed_workspace(&self) -> WorkerResult<String> {
        let caller = self.caller();
        let ws = self
            .opt_str(0, "workspace")?
            .unwrap_or(&caller.ws)
            .to_owned();
        caller.check(&format!("{ws}/*"), &ws)?;
        Ok(ws)
    }

    /// `execute`'s remote callbacks: `(progress_callback, output_callback)` (positions 3
    /// and 4 or keywords), each usable only on behalf of the caller's workspace.
    pub(crate) fn execute_callbacks(
        &self,
    ) -> (
        Option<crate::config::Callback>,
        Option<crate::config::Callback>,
    ) {
        let ws = &self.caller().ws;
        let cb = |i, name| {
            self.get(i, name)
                .and_then(|v| crate::config::Callback::parse(v, ws))
        };
        (cb(3, "progress_callback"), cb(4, "output_callback"))
    }
}

/// Who made a call, from the header fields the server stamps (`ws`, `from`, `user`): the
/// only identity a worker trusts.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The caller's workspace.
    pub(crate) ws: String,
    /// The caller's user record, if the header carried a readable one.
    user: Option<UserInfo>,
}

impl Caller {
    pub(crate) fn of(call: &Call) -> Self {
        let user = serde_json::from_value(to_json(&call.user)).ok();
        Caller {
            ws: call.ws.clone(),
            user,
        }
    }

    /// Whether this caller may use a session of `workspace`: callers in that workspace
    /// (the controller calls workers on behalf of the app's workspace), and users holding
    /// admin on it (the reference server's controller calls public workers as root).
    pub(crate) fn may_use(&self, workspace: &str) -> bool {
        self.ws == workspace
            || self
                .user
                .as_ref()
                .is_some_and(|u| u.can(workspace, Permission::Admin))
    }

    /// [`Caller::may_use`] as a result for session `session` of `workspace`.
    ///
    /// Errors: [`WorkerError::Permission`].
    pub(crate) fn check(&self, session: &str, workspace: &str) -> WorkerResult<()> {
        if self.may_use(workspace) {
            Ok(())
        } else {
            Err(WorkerError::Permission {
                session: session.to_owned(),
                owner: workspace.to_owned(),
                caller: self.ws.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhizo_protocol::message::Promise;
    use rhizo_protocol::value::{from_json, map};

    fn call(args: Vec<Value>, kwargs: Vec<(&str, Value)>) -> Call {
        Call {
            method: "services.w.get_logs".into(),
            from: "ws-a/c".into(),
            ws: "ws-a".into(),
            user: Value::Nil,
            session: None,
            args,
            kwargs: kwargs.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            promise: Promise::None,
        }
    }

    #[test]
    fn keyword_wins_over_position_and_nil_is_absent() {
        let c = call(
            vec!["ws-a/x".into(), Value::Nil],
            vec![("type", "stdout".into()), ("limit", Value::Nil)],
        );
        let a = Args::new("get_logs", &c);
        assert_eq!(a.str(0, "session_id").unwrap(), "ws-a/x");
        assert_eq!(a.opt_str(1, "type").unwrap(), Some("stdout"));
        assert_eq!(a.opt_usize(3, "limit").unwrap(), None);
        let err = a.str(5, "script").unwrap_err().to_string();
        assert_eq!(
            err,
            "TypeError: get_logs() missing required argument: 'script'"
        );
        let c = call(vec!["s".into(), Value::Nil, (-1).into()], vec![]);
        assert!(Args::new("get_logs", &c).opt_usize(2, "offset").is_err());
        let c = call(vec!["s".into(), Value::Nil, 2.0.into()], vec![]);
        assert_eq!(
            Args::new("get_logs", &c).opt_usize(2, "offset").unwrap(),
            Some(2)
        );
    }

    #[test]
    fn callers_of_other_workspaces_need_admin_there() {
        let mut c = call(vec![], vec![]);
        assert!(Caller::of(&c).may_use("ws-a"));
        assert!(!Caller::of(&c).may_use("ws-b"));
        let root = serde_json::to_value(UserInfo::root()).unwrap();
        c.user = from_json(&root);
        assert!(Caller::of(&c).may_use("ws-b"));
        c.user = map([("id", "someone".into())]);
        let e = Caller::of(&c).check("ws-b/s", "ws-b").unwrap_err();
        assert!(e.to_string().starts_with("PermissionError"), "{e}");
    }
}
