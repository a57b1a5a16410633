//! The manager's `built-in` service (protocol.md §4.2): `ping`, `get_service` of the
//! manager's own services (`default`, `built-in`) and the `message_cache` (in
//! [`super::cache`]).

use super::{bind, Manager};
use crate::error::{ManagerError, ManagerResult};
use rhizo_protocol::message::{Call, Param};
use rhizo_protocol::value::{map, method, RPromise};
use rmpv::Value;

/// Parameters of the `built-in` service's methods.
const BUILT_IN: [(&str, &[Param]); 2] = [
    ("get_service", &[("service_id", false)]),
    ("ping", &[("msg", true)]),
];

/// One parsed call of the `built-in` service (besides `message_cache.*`).
#[derive(Debug)]
enum Command {
    /// `get_service(service_id)`: `default` or `built-in`.
    GetService(Option<String>),
    /// `ping(msg)`: `"pong"`.
    Ping,
}

// === impl Manager (built-in service) ===

impl Manager {
    /// Runs `services.built-in.<name>`: binds, parses, applies.
    ///
    /// Errors: [`ManagerError::MethodNotFound`], [`ManagerError::BadCall`],
    /// [`ManagerError::NotFound`] (`Service not found: <id>`).
    pub(super) fn call_built_in(&self, name: &str, call: &Call) -> ManagerResult<Value> {
        let params = BUILT_IN.iter().find(|(n, _)| *n == name).map(|(_, p)| *p);
        let params = params
            .ok_or_else(|| ManagerError::MethodNotFound(format!("services.built-in.{name}")))?;
        let args = bind(name, params, call)?;
        let command = match name {
            "get_service" => Command::GetService(args[0].as_str().map(str::to_owned)),
            _ => Command::Ping,
        };
        match command {
            Command::GetService(id) => match id.as_deref() {
                Some("default") => Ok(self.default_service()),
                Some("built-in") => Ok(self.built_in_service()),
                other => Err(ManagerError::NotFound(format!(
                    "Service not found: {}",
                    other.unwrap_or_default()
                ))),
            },
            Command::Ping => Ok("pong".into()),
        }
    }

    /// The manager's `built-in` service object (§4.2).
    pub fn built_in_service(&self) -> Value {
        let cache = Value::Map(
            ["create", "append", "set", "process", "remove"]
                .iter()
                .map(|n| {
                    let m = method(
                        &self.addr,
                        &format!("services.built-in.message_cache.{n}"),
                        RPromise::Compact,
                        n,
                        "",
                        &self.config.public_base_url,
                    );
                    (Value::from(*n), m)
                })
                .collect(),
        );
        map([
            ("id", "built-in".into()),
            ("type", "built-in".into()),
            ("name", "Built-in services".into()),
            ("description", "".into()),
            (
                "config",
                map([
                    ("require_context", true.into()),
                    ("visibility", "public".into()),
                    ("api_version", 3.into()),
                ]),
            ),
            (
                "ping",
                self.encoded("built-in", "ping", "Ping the manager."),
            ),
            (
                "get_service",
                self.encoded("built-in", "get_service", "Get a service of the manager."),
            ),
            ("message_cache", cache),
        ])
    }
}
