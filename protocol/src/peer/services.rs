//! A client's own services as the RPC peer needs them (protocol.md §3.7, §4.5–4.6): the
//! records it registered and their member names (with the docs and schemas of members
//! that have them), to answer `services.built-in.*` itself and to refuse calls into
//! services, members or protected services it must not serve —
//! plus the methods it handed out to one caller (a remote generator's `next` and `close`,
//! §4.3), which only that caller may call.
//! Handlers stay with the driver; [`super::RpcPeer`] with [`super::Role::Client`] routes
//! incoming calls through [`LocalServices::route`].

use super::{reply, Transmit};
use crate::message::Call;
use crate::value::{self, get_str, map, method_with_schema as encoded_method, RPromise};
use rmpv::Value;
use std::collections::HashMap;

/// How [`LocalServices::route`] disposes of an incoming call.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// Answer at once with this result.
    Answer(Result<Value, String>),
    /// A member of a registered service: the owner runs it.
    Serve,
}

/// The services a client provides, as far as the protocol needs them: their records (what
/// `register_service` was sent, §4.5) and member names, to answer
/// `services.built-in.get_service` (§4.6) and check calls (§3.7). Handlers stay with the
/// driver.
#[derive(Debug, Clone)]
pub struct LocalServices {
    addr: String,
    server_url: String,
    services: Vec<LocalService>,
    /// Methods handed out to one caller: method path (`<session>.<object id>`) → the
    /// caller's address (`ws/cid`).
    objects: HashMap<String, String>,
}

#[derive(Debug, Clone)]
struct LocalService {
    name: String,
    record: Value,
    members: Vec<String>,
    /// Docs and schemas of members that have them ([`LocalServices::describe_member`]).
    docs: HashMap<String, MemberDoc>,
}

/// What the encoded method of a member says about it (§3.1): its `_rdoc` and its
/// `_rschema` (`{name, description, parameters}`, hypha-rpc's `schema_function` shape).
#[derive(Debug, Clone, PartialEq)]
struct MemberDoc {
    /// `_rdoc`.
    doc: String,
    /// `_rschema`.
    schema: Value,
}

// === service records ===

/// The record of a service `id` of client `addr` as `register_service` takes it (§4.5):
/// `{id:"<addr>:<id>", name, type:"generic", description:"", app_id:"*", config}`; a nil
/// `config` becomes an empty map.
pub fn service_record(addr: &str, id: &str, config: Value) -> Value {
    let config = if config.is_nil() {
        Value::Map(Vec::new())
    } else {
        config
    };
    map([
        ("id", format!("{addr}:{id}").into()),
        ("name", id.into()),
        ("type", "generic".into()),
        ("description", "".into()),
        ("app_id", "*".into()),
        ("config", config),
    ])
}

/// The record of client `addr`'s `built-in` service, registered on connect (§4.4 step 3):
/// public, `require_context`, `api_version` 3.
pub fn built_in_record(addr: &str) -> Value {
    map([
        ("id", format!("{addr}:built-in").into()),
        ("name", "built-in".into()),
        ("type", "built-in".into()),
        ("description", "".into()),
        ("app_id", "*".into()),
        (
            "config",
            map([
                ("visibility", "public".into()),
                ("require_context", true.into()),
                ("api_version", 3.into()),
            ]),
        ),
    ])
}

/// Whether a caller in `caller_ws` may use a service of a client in `own_ws`, from the
/// service's `config` (§3.7): `public`/`unlisted` always, `protected` (the default) only
/// from the own workspace or one listed in `authorized_workspaces`.
pub fn visible_to(record: &Value, own_ws: &str, caller_ws: &str) -> bool {
    let config = value::get(record, "config");
    let visibility = config
        .and_then(|c| get_str(c, "visibility"))
        .unwrap_or("protected");
    if visibility != "protected" || caller_ws == own_ws {
        return true;
    }
    config
        .and_then(|c| value::get(c, "authorized_workspaces"))
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|w| w.as_str() == Some(caller_ws)))
}

/// The value at the dotted `path` of `record` (`"a.b"` → `record.a.b`).
fn nested<'a>(record: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(record, |v, k| value::get(v, k))
}

fn workspace_of(addr: &str) -> &str {
    addr.split_once('/').map(|(w, _)| w).unwrap_or_default()
}

// === impl LocalServices ===

impl LocalServices {
    /// No services yet, for client `addr` (`"<ws>/<cid>"`) on the server at `server_url`.
    pub fn new(addr: impl Into<String>, server_url: impl Into<String>) -> Self {
        LocalServices {
            addr: addr.into(),
            server_url: server_url.into(),
            services: Vec::new(),
            objects: HashMap::new(),
        }
    }

    /// Exposes method `path` (outside `services.`, e.g. `<session>.<id>`) to `caller`
    /// (`ws/cid`) alone: [`LocalServices::route`] serves its calls from `caller` and
    /// refuses everyone else's.
    pub fn expose(&mut self, path: impl Into<String>, caller: impl Into<String>) {
        self.objects.insert(path.into(), caller.into());
    }

    /// Withdraws a method [`LocalServices::expose`] handed out; whether it was there.
    pub fn withdraw(&mut self, path: &str) -> bool {
        self.objects.remove(path).is_some()
    }

    /// Whether `path` is a method handed out with [`LocalServices::expose`].
    pub fn is_exposed(&self, path: &str) -> bool {
        self.objects.contains_key(path)
    }

    /// How many handed-out methods are exposed now.
    pub fn exposed(&self) -> usize {
        self.objects.len()
    }

    /// Adds (or replaces) service `name` with its record and member names (nested members
    /// as dotted paths, e.g. `"a.b"`).
    pub fn register(&mut self, name: &str, record: Value, members: Vec<String>) {
        self.services.retain(|s| s.name != name);
        self.services.push(LocalService {
            name: name.to_owned(),
            record,
            members,
            docs: HashMap::new(),
        });
    }

    /// Sets the `_rdoc` and `_rschema` (`{name, description, parameters}`, hypha-rpc's
    /// `schema_function` shape) that member `member` of the registered service `service`
    /// is described with, instead of an empty doc and a schema without parameters;
    /// whether the service was there. [`LocalServices::register`] again forgets them.
    pub fn describe_member(
        &mut self,
        service: &str,
        member: &str,
        doc: &str,
        schema: Value,
    ) -> bool {
        match self.services.iter_mut().find(|s| s.name == service) {
            Some(s) => {
                let doc = MemberDoc {
                    doc: doc.to_owned(),
                    schema,
                };
                s.docs.insert(member.to_owned(), doc);
                true
            }
            None => false,
        }
    }

    /// Removes service `name`; whether it was there.
    pub fn unregister(&mut self, name: &str) -> bool {
        let before = self.services.len();
        self.services.retain(|s| s.name != name);
        before != self.services.len()
    }

    /// Decides what to do with a call into this client: `built-in.ping` → `"pong"`,
    /// `built-in.get_service(name)` → [`LocalServices::describe`], a registered member the
    /// caller may use → [`Route::Serve`]; anything else is answered with the reference's
    /// error text (`Method not found: …`, `PermissionError: …`).
    pub fn route(&self, call: &Call) -> Route {
        let not_found = || Route::Answer(Err(format!("Method not found: {}", call.method)));
        if let Some(caller) = self.objects.get(&call.method) {
            if *caller == call.from {
                return Route::Serve;
            }
            return Route::Answer(Err(format!(
                "PermissionError: Access denied for method call ({}) from {}",
                call.method, call.from
            )));
        }
        let Some(path) = call.method.strip_prefix("services.") else {
            return not_found();
        };
        let Some((svc, member)) = path.split_once('.') else {
            return not_found();
        };
        if svc == "built-in" {
            return match member {
                "ping" => Route::Answer(Ok("pong".into())),
                "get_service" => {
                    let name = call
                        .args
                        .first()
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    Route::Answer(self.describe(name, &call.ws))
                }
                _ => not_found(),
            };
        }
        let Some(s) = self.services.iter().find(|s| s.name == svc) else {
            return not_found();
        };
        if !s.members.iter().any(|m| m == member) {
            return not_found();
        }
        let own_ws = workspace_of(&self.addr);
        let caller_ws = workspace_of(&call.from);
        if caller_ws != "*" && !visible_to(&s.record, own_ws, caller_ws) {
            return Route::Answer(Err(format!(
                "PermissionError: Permission denied for protected method {}, \
                 workspace mismatch: {caller_ws} != {own_ws}",
                call.method
            )));
        }
        Route::Serve
    }

    /// Answers a call the owner does not run itself: [`LocalServices::route`], with
    /// `Method not found` for [`Route::Serve`] too. `None` for fire-and-forget calls and
    /// refused promises.
    pub fn answer(&self, call: &Call) -> Option<Transmit> {
        let result = match self.route(call) {
            Route::Answer(r) => r,
            Route::Serve => Err(format!("Method not found: {}", call.method)),
        };
        reply(call, &self.addr, result)
    }

    /// The service object `built-in.get_service(name)` returns to a caller whose `ctx.ws`
    /// is `caller_ws`: the record with one encoded method (`_rpromise:"*"`, target this
    /// client, path `services.<name>.<member>`) per member (§4.6). `"built-in"` describes
    /// the built-in service itself (`ping`, `get_service`).
    ///
    /// Errors: `KeyError: Service not found: <name>`, or `PermissionError: …` for a
    /// protected service and a caller from another workspace.
    pub fn describe(&self, name: &str, caller_ws: &str) -> Result<Value, String> {
        if name == "built-in" {
            let mut obj = built_in_record(&self.addr);
            for m in ["ping", "get_service"] {
                value::set(&mut obj, m, self.encode_member("built-in", m, None));
            }
            return Ok(obj);
        }
        let s = self
            .services
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| format!("KeyError: Service not found: {name}"))?;
        if !visible_to(&s.record, workspace_of(&self.addr), caller_ws) {
            return Err(format!(
                "PermissionError: Permission denied for protected service: {name}"
            ));
        }
        let mut obj = s.record.clone();
        for m in &s.members {
            // A nested member the record already spells out (`tools: {add: …}` for
            // `tools.add`) is described there, not again under its dotted name.
            if m.contains('.') && nested(&s.record, m).is_some() {
                continue;
            }
            value::set(&mut obj, m, self.encode_member(name, m, s.docs.get(m)));
        }
        Ok(obj)
    }

    fn encode_member(&self, service: &str, member: &str, doc: Option<&MemberDoc>) -> Value {
        encoded_method(
            &self.addr,
            &format!("services.{service}.{member}"),
            RPromise::Compact,
            member,
            doc.map_or("", |d| d.doc.as_str()),
            doc.map(|d| &d.schema),
            &self.server_url,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::map;

    #[test]
    fn nested_members_spelled_out_in_the_record_are_not_repeated_flat() {
        let mut local = LocalServices::new("ws-a/c1", "http://h");
        let mut record = service_record("ws-a/c1", "svc", map([("visibility", "public".into())]));
        let own = map([
            ("_rtype", "method".into()),
            ("_rschema", map([("name", "add".into())])),
        ]);
        value::set(&mut record, "tools", map([("add", own.clone())]));
        local.register(
            "svc",
            record,
            vec!["tools.add".into(), "other.x".into(), "top".into()],
        );
        let obj = local.describe("svc", "ws-a").unwrap();
        assert_eq!(nested(&obj, "tools.add"), Some(&own));
        assert!(value::get(&obj, "tools.add").is_none());
        // Members the record does not spell out keep their dotted names.
        assert_eq!(
            value::get_str(value::get(&obj, "other.x").unwrap(), "_rmethod"),
            Some("services.svc.other.x")
        );
        assert!(value::get(&obj, "top").is_some());
    }

    #[test]
    fn described_members_carry_their_doc_and_schema() {
        let mut local = LocalServices::new("ws-a/c1", "http://h");
        let record = service_record("ws-a/c1", "svc", Value::Nil);
        local.register("svc", record, vec!["add".into(), "plain".into()]);
        let schema = map([
            ("name", "add".into()),
            ("description", "Adds.".into()),
            (
                "parameters",
                map([
                    ("type", "object".into()),
                    (
                        "properties",
                        map([("a", map([("type", "integer".into())]))]),
                    ),
                ]),
            ),
        ]);
        assert!(local.describe_member("svc", "add", "Adds.", schema.clone()));
        assert!(!local.describe_member("nope", "add", "", Value::Nil));
        let obj = local.describe("svc", "ws-a").unwrap();
        let add = value::get(&obj, "add").unwrap();
        assert_eq!(value::get(add, "_rschema"), Some(&schema));
        assert_eq!(get_str(add, "_rdoc"), Some("Adds."));
        // Members without a doc keep the empty one.
        let plain = value::get(&obj, "plain").unwrap();
        assert_eq!(get_str(plain, "_rdoc"), Some(""));
        let props = value::get(value::get(plain, "_rschema").unwrap(), "parameters")
            .and_then(|p| value::get(p, "properties"));
        assert_eq!(props, Some(&Value::Map(vec![])));
    }
}
