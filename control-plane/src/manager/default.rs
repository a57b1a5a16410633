//! The `default` service of the manager: the workspace-manager methods
//! (protocol.md §4.3–4.7, workspace-api.md §5.1–5.5), as thin wire adapters.
//!
//! [`METHODS`] names every method with its parameters and doc line (it also builds the
//! service object, [`Manager::default_service`]). A call is bound to those parameters,
//! parsed into the typed command of its method ([`Command::parse`]) and applied to the
//! domain modules ([`Command::apply`]): the registry, the workspaces, the tokens and the
//! event log, which persist and announce their own changes. One file per group of
//! methods holds their commands (mini-redis `cmd/`):
//!
//! * [`register`] — `register_service`, `unregister_service`;
//! * [`lookup`] — `get_service`, `get_service_info`;
//! * [`listing`] — `list_services`, `search_services`, `list_clients`, `get_summary`;
//! * [`subscriptions`] — `subscribe`, `unsubscribe`, `log_event`, `get_events`,
//!   `get_event_stats`;
//! * [`tokens`] — `generate_token`, `parse_token`, `revoke_token`;
//! * [`workspaces`] — `create_workspace`, `delete_workspace`, `list_workspaces`,
//!   `get_workspace_info`, `check_status`;
//! * [`settings`] — `set_env`, `get_env`, `bookmark`, `unbookmark`, the service types;
//! * [`cleanup`] — `cleanup`; [`diagnostics`] — `ping`, `echo`, `log`.
//!
//! Errors are [`ManagerError`]s of the variant whose Python exception class the reference
//! raises (`PermissionError: …`, `KeyError: …`, `ValueError: …` on the wire), because
//! clients and test suites match on those words.

mod cleanup;
mod diagnostics;
mod listing;
mod lookup;
mod register;
mod settings;
mod subscriptions;
mod tokens;
mod workspaces;

use super::{bind, Ctx, Manager};
use crate::error::{ManagerError, ManagerResult};
use rhizo_protocol::message::{Call, Param};
use rmpv::Value;
use std::sync::Arc;

/// Name, parameters (name, optional) and doc line of every method the `default` service
/// exposes.
pub(super) const METHODS: &[(&str, &[Param], &str)] = &[
    (
        "register_service",
        &[("service", false), ("config", true)],
        "Register a service.",
    ),
    (
        "unregister_service",
        &[("service_id", false)],
        "Unregister one of the caller's services.",
    ),
    (
        "get_service",
        &[("service_id", false), ("config", true)],
        "Get a service by id.",
    ),
    (
        "get_service_info",
        &[("service_id", false), ("config", true)],
        "Get a service record by id.",
    ),
    (
        "list_services",
        &[
            ("query", true),
            ("include_unlisted", true),
            ("include_app_services", true),
            ("prioritize_running_services", true),
        ],
        "List services.",
    ),
    (
        "list_clients",
        &[("workspace", true)],
        "List the clients of a workspace.",
    ),
    (
        "subscribe",
        &[("event_type", false)],
        "Subscribe the calling client to events.",
    ),
    (
        "unsubscribe",
        &[("event_type", false)],
        "Unsubscribe the calling client from events.",
    ),
    (
        "ping",
        &[("client_id", false), ("timeout", true)],
        "Ping a client.",
    ),
    ("echo", &[("data", false)], "Return the argument."),
    ("log", &[("msg", false)], "Log a message on the server."),
    (
        "generate_token",
        &[("config", true)],
        "Generate a token for a workspace.",
    ),
    (
        "parse_token",
        &[("token", false)],
        "Parse a token into a user record.",
    ),
    (
        "get_workspace_info",
        &[("workspace", true)],
        "Get a workspace record.",
    ),
    ("revoke_token", &[("token", false)], "Revoke a token."),
    (
        "cleanup",
        &[("workspace", true), ("timeout", true)],
        "Remove unresponsive clients, or an empty temporary workspace.",
    ),
    (
        "create_workspace",
        &[("config", false), ("overwrite", true)],
        "Create a workspace.",
    ),
    (
        "delete_workspace",
        &[("workspace", false)],
        "Delete a workspace.",
    ),
    (
        "list_workspaces",
        &[("match", true), ("offset", true), ("limit", true)],
        "List the workspaces the caller can read.",
    ),
    (
        "set_env",
        &[("key", false), ("value", true)],
        "Set (or, with null, remove) an environment variable.",
    ),
    (
        "get_env",
        &[("key", true)],
        "Get one environment variable or all.",
    ),
    ("check_status", &[], "Status of the caller's workspace."),
    (
        "get_summary",
        &[],
        "Clients and services of the caller's workspace.",
    ),
    (
        "bookmark",
        &[("item", false)],
        "Bookmark a workspace or service.",
    ),
    ("unbookmark", &[("item", false)], "Remove a bookmark."),
    (
        "register_service_type",
        &[("type_info", false)],
        "Register a service type.",
    ),
    (
        "get_service_type",
        &[("type_id", false)],
        "Get a service type.",
    ),
    (
        "list_service_types",
        &[("workspace", true)],
        "List service types.",
    ),
    (
        "search_services",
        &[
            ("query", true),
            ("filters", true),
            ("limit", true),
            ("offset", true),
            ("return_fields", true),
            ("order_by", true),
            ("pagination", true),
            ("include_unlisted", true),
        ],
        "Search services by text.",
    ),
    (
        "log_event",
        &[("event_type", false), ("data", true)],
        "Log an event.",
    ),
    (
        "get_events",
        &[
            ("event_type", true),
            ("start_time", true),
            ("end_time", true),
        ],
        "The caller's logged events.",
    ),
    (
        "get_event_stats",
        &[
            ("event_type", true),
            ("start_time", true),
            ("end_time", true),
        ],
        "Counts of the caller's logged events.",
    ),
];

/// The bound arguments of a call, one per parameter of its method, in declared order.
fn args<const N: usize>(bound: Vec<Value>) -> [Value; N] {
    let n = bound.len();
    bound
        .try_into()
        .unwrap_or_else(|_| unreachable!("bind yields one value per parameter, got {n} for {N}"))
}

/// A number argument (integer or float); anything else is `None`.
fn num(v: Option<&Value>) -> Option<f64> {
    v.and_then(|t| t.as_f64().or(t.as_i64().map(|i| i as f64)))
}

/// A string argument, owned; anything else is `None`.
fn opt_string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// One parsed call of the `default` service.
#[derive(Debug)]
pub(super) enum Command {
    RegisterService(register::RegisterService),
    UnregisterService(register::UnregisterService),
    GetService(lookup::GetService),
    GetServiceInfo(lookup::GetServiceInfo),
    ListServices(listing::ListServices),
    SearchServices(listing::SearchServices),
    ListClients(listing::ListClients),
    GetSummary(listing::GetSummary),
    Subscribe(subscriptions::Subscribe),
    LogEvent(subscriptions::LogEvent),
    GetEvents(subscriptions::GetEvents),
    GenerateToken(tokens::GenerateToken),
    ParseToken(tokens::ParseToken),
    RevokeToken(tokens::RevokeToken),
    CreateWorkspace(workspaces::CreateWorkspace),
    DeleteWorkspace(workspaces::DeleteWorkspace),
    ListWorkspaces(workspaces::ListWorkspaces),
    GetWorkspaceInfo(workspaces::GetWorkspaceInfo),
    CheckStatus(workspaces::CheckStatus),
    SetEnv(settings::SetEnv),
    GetEnv(settings::GetEnv),
    Bookmark(settings::Bookmark),
    RegisterServiceType(settings::RegisterServiceType),
    GetServiceType(settings::GetServiceType),
    ListServiceTypes(settings::ListServiceTypes),
    Cleanup(cleanup::Cleanup),
    Ping(diagnostics::Ping),
    Echo(diagnostics::Echo),
    Log(diagnostics::Log),
}

// === impl Command ===

impl Command {
    /// Binds `call` to the parameters of method `name` and parses the arguments.
    ///
    /// Errors: [`ManagerError::MethodNotFound`] for a name not in [`METHODS`],
    /// [`ManagerError::BadCall`] for arguments that do not fit, and the argument errors
    /// a method checks before anything else ([`ManagerError::InvalidArgument`]).
    pub(super) fn parse(name: &str, call: &Call) -> ManagerResult<Self> {
        let not_found = || ManagerError::MethodNotFound(format!("services.default.{name}"));
        let (_, params, _) = METHODS
            .iter()
            .find(|(n, _, _)| *n == name)
            .ok_or_else(not_found)?;
        let a = bind(name, params, call)?;
        Ok(match name {
            "register_service" => Command::RegisterService(register::RegisterService::parse(a)?),
            "unregister_service" => {
                Command::UnregisterService(register::UnregisterService::parse(a))
            }
            "get_service" => Command::GetService(lookup::GetService::parse(a)?),
            "get_service_info" => Command::GetServiceInfo(lookup::GetServiceInfo::parse(a)?),
            "list_services" => Command::ListServices(listing::ListServices::parse(a)?),
            "search_services" => Command::SearchServices(listing::SearchServices::parse(a)),
            "list_clients" => Command::ListClients(listing::ListClients::parse(a)),
            "get_summary" => Command::GetSummary(listing::GetSummary),
            "subscribe" | "unsubscribe" => {
                Command::Subscribe(subscriptions::Subscribe::parse(a, name == "subscribe")?)
            }
            "log_event" => Command::LogEvent(subscriptions::LogEvent::parse(a)),
            "get_events" | "get_event_stats" => Command::GetEvents(
                subscriptions::GetEvents::parse(a, name == "get_event_stats"),
            ),
            "generate_token" => Command::GenerateToken(tokens::GenerateToken::parse(a)),
            "parse_token" => Command::ParseToken(tokens::ParseToken::parse(a)),
            "revoke_token" => Command::RevokeToken(tokens::RevokeToken::parse(a)),
            "create_workspace" => Command::CreateWorkspace(workspaces::CreateWorkspace::parse(a)),
            "delete_workspace" => Command::DeleteWorkspace(workspaces::DeleteWorkspace::parse(a)),
            "list_workspaces" => Command::ListWorkspaces(workspaces::ListWorkspaces::parse(a)),
            "get_workspace_info" => {
                Command::GetWorkspaceInfo(workspaces::GetWorkspaceInfo::parse(a))
            }
            "check_status" => Command::CheckStatus(workspaces::CheckStatus),
            "set_env" => Command::SetEnv(settings::SetEnv::parse(a)),
            "get_env" => Command::GetEnv(settings::GetEnv::parse(a)),
            "bookmark" | "unbookmark" => {
                Command::Bookmark(settings::Bookmark::parse(a, name == "bookmark")?)
            }
            "register_service_type" => {
                Command::RegisterServiceType(settings::RegisterServiceType::parse(a))
            }
            "get_service_type" => Command::GetServiceType(settings::GetServiceType::parse(a)?),
            "list_service_types" => Command::ListServiceTypes(settings::ListServiceTypes::parse(a)),
            "cleanup" => Command::Cleanup(cleanup::Cleanup::parse(a)),
            "ping" => Command::Ping(diagnostics::Ping::parse(a)),
            "echo" => Command::Echo(diagnostics::Echo::parse(a)),
            "log" => Command::Log(diagnostics::Log::parse(a)),
            _ => return Err(not_found()),
        })
    }

    /// Runs the command for the caller `ctx`; returns the method's result.
    pub(super) async fn apply(self, m: &Arc<Manager>, ctx: &Ctx) -> ManagerResult<Value> {
        match self {
            Command::RegisterService(c) => c.apply(m, ctx),
            Command::UnregisterService(c) => c.apply(m, ctx),
            Command::GetService(c) => c.apply(m, ctx).await,
            Command::GetServiceInfo(c) => c.apply(m, ctx),
            Command::ListServices(c) => c.apply(m, ctx),
            Command::SearchServices(c) => Ok(c.apply(m, ctx)),
            Command::ListClients(c) => c.apply(m, ctx),
            Command::GetSummary(c) => c.apply(m, ctx),
            Command::Subscribe(c) => c.apply(m, ctx),
            Command::LogEvent(c) => c.apply(m, ctx).await,
            Command::GetEvents(c) => c.apply(m, ctx).await,
            Command::GenerateToken(c) => c.apply(m, ctx),
            Command::ParseToken(c) => c.apply(m, ctx),
            Command::RevokeToken(c) => c.apply(m, ctx).await,
            Command::CreateWorkspace(c) => c.apply(m, ctx).await,
            Command::DeleteWorkspace(c) => c.apply(m, ctx).await,
            Command::ListWorkspaces(c) => c.apply(m, ctx),
            Command::GetWorkspaceInfo(c) => c.apply(m, ctx),
            Command::CheckStatus(c) => c.apply(m, ctx),
            Command::SetEnv(c) => c.apply(m, ctx).await,
            Command::GetEnv(c) => c.apply(m, ctx),
            Command::Bookmark(c) => c.apply(m, ctx).await,
            Command::RegisterServiceType(c) => c.apply(m, ctx).await,
            Command::GetServiceType(c) => c.apply(m, ctx),
            Command::ListServiceTypes(c) => c.apply(m, ctx),
            Command::Cleanup(c) => c.apply(m, ctx).await,
            Command::Ping(c) => Ok(c.apply(m, ctx).await),
            Command::Echo(c) => c.apply(ctx),
            Command::Log(c) => c.apply(ctx),
        }
    }
}

// === impl Manager (default service) ===

impl Manager {
    /// Server information merged into the manager service's `config` (workspace-api.md §3).
    fn server_info(&self) -> Vec<(&'static str, Value)> {
        let c = &self.config;
        vec![
            ("server_id", c.server_id.as_str().into()),
            ("hypha_version", c.version.as_str().into()),
            ("public_base_url", c.public_base_url.as_str().into()),
            ("local_base_url", c.local_base_url.as_str().into()),
            ("auth0_client_id", Value::Nil),
            ("auth0_domain", Value::Nil),
            ("auth0_audience", c.claims.audience.as_str().into()),
            ("auth0_issuer", c.claims.issuer.as_str().into()),
            (
                "login_service_url",
                format!("{}/public/services/hypha-login", c.public_base_url).into(),
            ),
        ]
    }

    /// The `default` service object (§4.3).
    pub fn default_service(&self) -> Value {
        let mut config = vec![
            (Value::from("require_context"), Value::Boolean(true)),
            (Value::from("visibility"), Value::from("public")),
        ];
        config.extend(
            self.server_info()
                .into_iter()
                .map(|(k, v)| (Value::from(k), v)),
        );
        let mut entries = vec![
            (Value::from("id"), Value::from("default")),
            (
                Value::from("name"),
                Value::from("Default workspace management service"),
            ),
            (
                Value::from("description"),
                Value::from("Services for managing workspace."),
            ),
            (Value::from("type"), Value::from("generic")),
            (Value::from("config"), Value::Map(config)),
        ];
        for (name, _, doc) in METHODS {
            entries.push((Value::from(*name), self.encoded("default", name, doc)));
        }
        Value::Map(entries)
    }

    /// Runs `services.default.<name>` for the caller `ctx`: parse, then apply.
    pub(super) async fn call_default(
        self: &Arc<Self>,
        ctx: &Ctx,
        name: &str,
        call: &Call,
    ) -> ManagerResult<Value> {
        Command::parse(name, call)?.apply(self, ctx).await
    }
}
