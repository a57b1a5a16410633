//! `list_services`, `search_services`, `list_clients` and `get_summary`
//! (workspace-api.md §5.1, §5.3): reads of the [`crate::registry::Registry`] (and, for the
//! summary, of the caller's workspace record).

use super::{args, opt_string, Ctx, Manager};
use crate::error::{ManagerError, ManagerResult};
use crate::registry::{parse_order, Search, ServiceQuery};
use rhizo_protocol::user::Permission;
use rhizo_protocol::value::map;
use rmpv::Value;

/// `list_services(query, include_unlisted, …)`.
#[derive(Debug)]
pub(crate) struct ListServices {
    query: ServiceQuery,
    include_unlisted: bool,
}

// === impl ListServices ===

impl ListServices {
    /// Errors: [`ManagerError::InvalidArgument`] for a query that does not parse.
    pub(crate) fn parse(a: Vec<Value>) -> ManagerResult<Self> {
        let [query, include_unlisted, _apps, _running] = args(a);
        Ok(ListServices {
            query: ServiceQuery::parse(&query)?,
            include_unlisted: include_unlisted.as_bool().unwrap_or(false),
        })
    }

    pub(crate) fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        m.registry
            .list(ctx, &self.query, self.include_unlisted)
            .map(Value::Array)
    }
}

// === impl Manager (listing) ===

impl Manager {
    /// `list_services(query, include_unlisted)` with a wire `query` (also for HTTP callers).
    pub(in crate::manager) fn list_services(
        &self,
        ctx: &Ctx,
        query: &Value,
        include_unlisted: bool,
    ) -> ManagerResult<Value> {
        let query = ServiceQuery::parse(query)?;
        ListServices {
            query,
            include_unlisted,
        }
        .apply(self, ctx)
    }
}

/// `search_services(query, filters, limit, offset, return_fields, order_by, pagination,
/// include_unlisted)`: see [`crate::registry::Search`] (word matching, not vectors).
#[derive(Debug)]
pub(crate) struct SearchServices {
    search: Search,
}

// === impl SearchServices ===

impl SearchServices {
    /// Lenient, as it cannot refuse: a `query` that is not a string (the reference also
    /// takes a precomputed vector) matches everything, `filters` that are not a map and
    /// `return_fields` entries that are not strings are left out, and a `limit` or
    /// `offset` that is not a non-negative integer takes its default (5, 0).
    pub(crate) fn parse(a: Vec<Value>) -> Self {
        let [query, filters, limit, offset, fields, order, pages, unlisted] = args(a);
        let filters = filters
            .as_map()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.clone())))
                    .collect()
            })
            .unwrap_or_default();
        let return_fields = fields.as_array().map(|f| {
            f.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        });
        SearchServices {
            search: Search {
                text: opt_string(&query).filter(|q| !q.trim().is_empty()),
                filters,
                limit: limit.as_u64().unwrap_or(5) as usize,
                offset: offset.as_u64().unwrap_or(0) as usize,
                return_fields,
                order_by: order.as_str().and_then(parse_order),
                pagination: pages.as_bool().unwrap_or(false),
                include_unlisted: unlisted.as_bool().unwrap_or(false),
            },
        }
    }

    pub(crate) fn apply(self, m: &Manager, ctx: &Ctx) -> Value {
        m.registry.search(ctx, &self.search)
    }
}

/// `list_clients(workspace)`.
#[derive(Debug)]
pub(crate) struct ListClients {
    workspace: Option<String>,
}

// === impl ListClients ===

impl ListClients {
    pub(crate) fn parse(a: Vec<Value>) -> Self {
        let [workspace] = args(a);
        ListClients {
            workspace: opt_string(&workspace),
        }
    }

    pub(crate) fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        m.registry
            .list_clients(ctx, self.workspace.as_deref())
            .map(Value::Array)
    }
}

/// `get_summary()`: name, description, clients and services of the caller's workspace.
#[derive(Debug)]
pub(crate) struct GetSummary;

// === impl GetSummary ===

impl GetSummary {
    pub(crate) fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::Read)?;
        let info = m
            .workspaces
            .get(&ctx.ws)
            .ok_or_else(|| ManagerError::NotFound(format!("Workspace not found: {}", ctx.ws)))?;
        let (clients, services) = m.registry.summary(&ctx.ws);
        Ok(map([
            ("name", info.name.as_str().into()),
            ("description", info.description.as_str().into()),
            ("client_count", clients.len().into()),
            ("clients", Value::Array(clients)),
            ("service_count", services.len().into()),
            ("services", Value::Array(services)),
        ]))
    }
}
