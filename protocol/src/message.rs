//! RPC messages as the manager peer reads and writes them (protocol.md §3.3–3.5, §4.4).
//!
//! Contract, in call order:
//! 1. [`Message::decode`] a whole frame (header + optional extra, merged; §2.1).
//! 2. [`Message::classify`] it: a [`Call`] into one of our services, a reply
//!    ([`ReplyKind`]) to a call we made, or something else (ignored).
//! 3. For a call: [`bind`] its arguments against the method's parameter list, run it,
//!    then build the answer with [`Call::reply`].
//! 4. Outgoing calls, with their sessions, timeouts and heartbeats, are the business of
//!    the RPC peer state machine ([`crate::peer::RpcPeer`]), which builds on these types.

use crate::value::{self, get, get_str};
use crate::FrameError;
use rmpv::Value;

/// A decoded frame: the header as sent (the receiver's `ctx`) and the merged message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The first segment only (server-stamped `from`, `to`, `ws`, `user` are here).
    pub header: Value,
    /// Header with the extra segment merged over it (extra keys win, §2.1).
    pub merged: Value,
}

/// How the caller wants its answer (§3.4).
#[derive(Debug, Clone, PartialEq)]
pub enum Promise {
    /// Fire and forget.
    None,
    /// `promise: "*"`: reply to `from` at `<session>.resolve|reject`; heartbeat every
    /// `interval` seconds.
    Compact {
        /// Heartbeat interval, seconds (`t`); `None` if the caller sent none.
        interval: Option<f64>,
    },
    /// An explicit promise map of encoded methods.
    Explicit {
        /// Encoded `resolve` method.
        resolve: Value,
        /// Encoded `reject` method.
        reject: Value,
        /// Encoded `heartbeat` method, if any.
        heartbeat: Option<Value>,
        /// Heartbeat interval, seconds.
        interval: Option<f64>,
    },
}

/// A method call addressed to one of the manager's services.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Method path, e.g. `services.default.register_service`.
    pub method: String,
    /// Trusted `"<ws>/<cid>"` of the caller (server-stamped).
    pub from: String,
    /// Trusted workspace of the caller.
    pub ws: String,
    /// Trusted user record of the caller.
    pub user: Value,
    /// The caller's session, if it expects a reply.
    pub session: Option<String>,
    /// Positional arguments (the kwargs map removed when `with_kwargs`).
    pub args: Vec<Value>,
    /// Keyword arguments (`with_kwargs: true`, §3.5).
    pub kwargs: Vec<(Value, Value)>,
    /// How to answer.
    pub promise: Promise,
}

/// A reply to a call the manager made.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyKind {
    /// `<session>.resolve` with the result.
    Resolve(Value),
    /// `<session>.reject` with the error message.
    Reject(String),
    /// `<session>.heartbeat`: the callee is still working.
    Heartbeat,
}

/// What a decoded message is, from the manager's point of view.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A call into `services.*` of the manager.
    Call(Box<Call>),
    /// A reply to an outgoing call; `session` is the manager's own session id.
    Reply {
        /// The session of the manager's outgoing call.
        session: String,
        /// Resolve, reject or heartbeat.
        kind: ReplyKind,
    },
    /// Anything else (events, unknown shapes); ignored by the manager.
    Other,
}

// === impl Message ===

impl Message {
    /// Decodes a whole frame: one or two msgpack maps.
    ///
    /// Errors: [`FrameError`] if either segment is not a msgpack map.
    pub fn decode(frame: &[u8]) -> Result<Self, FrameError> {
        let mut cur = frame;
        let header = rmpv::decode::read_value(&mut cur).map_err(|_| FrameError::Truncated)?;
        if !header.is_map() {
            return Err(FrameError::NotAMap);
        }
        let mut merged = header.clone();
        if !cur.is_empty() {
            let extra = rmpv::decode::read_value(&mut cur).map_err(|_| FrameError::Truncated)?;
            let Value::Map(entries) = extra else {
                return Err(FrameError::NotAMap);
            };
            for (k, v) in entries {
                if let Some(k) = k.as_str() {
                    let k = k.to_owned();
                    value::set(&mut merged, &k, v);
                }
            }
        }
        Ok(Message { header, merged })
    }

    /// Sorts the message into a call, a reply or something else.
    pub fn classify(self) -> Incoming {
        let m = &self.merged;
        if get_str(m, "type") != Some("method") {
            return Incoming::Other;
        }
        let Some(method) = get_str(m, "method") else {
            return Incoming::Other;
        };
        if !method.starts_with("services.") {
            let Some((session, name)) = method.rsplit_once('.') else {
                return Incoming::Other;
            };
            let first_arg = get(m, "args").and_then(|a| a.as_array()?.first().cloned());
            let kind = match name {
                "resolve" => Some(ReplyKind::Resolve(first_arg.unwrap_or(Value::Nil))),
                "reject" => Some(ReplyKind::Reject(error_text(first_arg.as_ref()))),
                "heartbeat" => Some(ReplyKind::Heartbeat),
                // Any other `<session>.<name>` is a call of a callback we handed out.
                _ => None,
            };
            if let Some(kind) = kind {
                return Incoming::Reply {
                    session: session.to_owned(),
                    kind,
                };
            }
        }
        let header = &self.header;
        let mut args = get(m, "args")
            .and_then(|a| a.as_array().cloned())
            .unwrap_or_default();
        let mut kwargs = Vec::new();
        if get(m, "with_kwargs").and_then(Value::as_bool) == Some(true) {
            if let Some(Value::Map(kw)) = args.last() {
                kwargs = kw.clone();
                args.pop();
            }
        }
        let interval =
            |v: Option<&Value>| v.and_then(|t| t.as_f64().or(t.as_i64().map(|i| i as f64)));
        let promise = match get(m, "promise") {
            Some(Value::String(s)) if s.as_str() == Some("*") => Promise::Compact {
                interval: interval(get(m, "t")),
            },
            Some(p @ Value::Map(_)) => match (get(p, "resolve"), get(p, "reject")) {
                (Some(res), Some(rej)) => Promise::Explicit {
                    resolve: res.clone(),
                    reject: rej.clone(),
                    heartbeat: get(p, "heartbeat").filter(|h| h.is_map()).cloned(),
                    interval: interval(get(p, "interval")),
                },
                _ => Promise::None,
            },
            _ => Promise::None,
        };
        Incoming::Call(Box::new(Call {
            method: method.to_owned(),
            from: get_str(header, "from").unwrap_or_default().to_owned(),
            ws: get_str(header, "ws").unwrap_or_default().to_owned(),
            user: get(header, "user").cloned().unwrap_or(Value::Nil),
            session: get_str(header, "session").map(str::to_owned),
            args,
            kwargs,
            promise,
        }))
    }
}

/// The message of a reject argument: `_rvalue` of an error map, or the value as text.
pub fn error_text(v: Option<&Value>) -> String {
    match v {
        Some(v) if get_str(v, "_rvalue").is_some() => get_str(v, "_rvalue").unwrap().to_owned(),
        Some(Value::String(s)) => s.as_str().unwrap_or_default().to_owned(),
        Some(v) => v.to_string(),
        None => "unknown error".to_owned(),
    }
}

/// Encodes a two-segment frame; the extra segment is left out when `extra` is `None`.
pub fn encode_frame(header: &Value, extra: Option<&Value>) -> Vec<u8> {
    let mut out = value::encode(header);
    if let Some(e) = extra {
        rmpv::encode::write_value(&mut out, e).expect("writing to a Vec cannot fail");
    }
    out
}

/// Where and how to answer a call: `(to, method)` of the resolve or reject callback.
fn reply_route(call: &Call, ok: bool) -> Option<(String, String)> {
    match &call.promise {
        Promise::None => None,
        Promise::Compact { .. } => {
            let session = call.session.as_ref()?;
            let name = if ok { "resolve" } else { "reject" };
            Some((call.from.clone(), format!("{session}.{name}")))
        }
        Promise::Explicit {
            resolve, reject, ..
        } => promise_callback(if ok { resolve } else { reject }, &call.from),
    }
}

/// The `(to, method)` of an encoded promise callback, if it is one the answering peer may
/// call: a `<session>.resolve`, `<session>.reject` or `<session>.heartbeat` of the caller
/// itself (`_rtarget`, made absolute, equals the trusted `from`).
///
/// Anything else is refused (`None`): a caller must not be able to make the answering peer
/// (whose calls clients trust, e.g. the manager) call a method of another client, such as
/// `services.<svc>.<fn>` in a workspace the caller cannot reach (protocol.md §3.4). The
/// reference server answers any promise target; rhizo does the safer thing.
pub fn promise_callback(cb: &Value, from: &str) -> Option<(String, String)> {
    let target = absolute(get_str(cb, "_rtarget")?, from);
    let method = get_str(cb, "_rmethod")?;
    let (session, name) = method.rsplit_once('.')?;
    let allowed = matches!(name, "resolve" | "reject" | "heartbeat")
        && !session.is_empty()
        && !session.starts_with("services.")
        && session != "services";
    (allowed && target == from).then(|| (target, method.to_owned()))
}

/// Makes a bare client id absolute by prefixing the workspace of `from` (§3.1).
pub fn absolute(target: &str, from: &str) -> String {
    if target.contains('/') {
        target.to_owned()
    } else {
        let ws = from.split_once('/').map(|(w, _)| w).unwrap_or(from);
        format!("{ws}/{target}")
    }
}

// === impl Call ===

impl Call {
    /// Builds the reply frame for this call from `manager` (`"*/<manager_id>"`), or `None`
    /// for fire-and-forget calls. `result` is the encoded return value or the error text;
    /// rejects carry the `_rtype:"error"` map Python callers need (§3.4).
    ///
    /// Returns `(target address, frame bytes)`.
    pub fn reply(&self, manager: &str, result: Result<Value, String>) -> Option<(String, Vec<u8>)> {
        let (to, method) = reply_route(self, result.is_ok())?;
        let arg = match result {
            Ok(v) => v,
            Err(e) => value::error(&e),
        };
        let header = value::map([
            ("type", "method".into()),
            ("from", manager.into()),
            ("to", to.as_str().into()),
            ("method", method.into()),
        ]);
        let extra = value::map([("args", Value::Array(vec![arg]))]);
        Some((to, encode_frame(&header, Some(&extra))))
    }

    /// Builds a heartbeat frame for a long-running call (explicit promises with a
    /// heartbeat callback, and compact promises), or `None`.
    pub fn heartbeat(&self, manager: &str) -> Option<(String, Vec<u8>)> {
        let (to, method) = match &self.promise {
            Promise::Compact { .. } => (
                self.from.clone(),
                format!("{}.heartbeat", self.session.as_ref()?),
            ),
            Promise::Explicit {
                heartbeat: Some(h), ..
            } => promise_callback(h, &self.from)?,
            _ => return None,
        };
        let header = value::map([
            ("type", "method".into()),
            ("from", manager.into()),
            ("to", to.as_str().into()),
            ("method", method.into()),
        ]);
        Some((to, encode_frame(&header, None)))
    }
}

/// A declared parameter: name and whether it has a default (missing → nil).
pub type Param = (&'static str, bool);

/// Binds positional arguments by declared order, then keyword arguments by name (§3.5).
///
/// Returns one value per parameter (nil where an optional parameter was not given).
/// Errors: too many positional arguments, an unknown keyword, a parameter given twice, or a
/// required parameter missing — each as a `TypeError: …` message in Python's wording.
pub fn bind(method: &str, params: &[Param], call: &Call) -> Result<Vec<Value>, String> {
    if call.args.len() > params.len() {
        return Err(format!(
            "TypeError: {method}() takes {} positional arguments but {} were given",
            params.len(),
            call.args.len()
        ));
    }
    let mut out: Vec<Option<Value>> = vec![None; params.len()];
    for (i, a) in call.args.iter().enumerate() {
        out[i] = Some(a.clone());
    }
    for (k, v) in &call.kwargs {
        let name = k.as_str().unwrap_or_default();
        // `context` is injected by the server, never taken from the caller.
        if name == "context" {
            continue;
        }
        let Some(i) = params.iter().position(|(p, _)| *p == name) else {
            return Err(format!(
                "TypeError: {method}() got an unexpected keyword argument '{name}'"
            ));
        };
        if out[i].is_some() {
            return Err(format!(
                "TypeError: {method}() got multiple values for argument '{name}'"
            ));
        }
        out[i] = Some(v.clone());
    }
    params
        .iter()
        .zip(out)
        .map(|((name, optional), v)| match v {
            Some(v) => Ok(v),
            None if *optional => Ok(Value::Nil),
            None => Err(format!(
                "TypeError: {method}() missing required argument: '{name}'"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests;
