//! Events: `subscribe` / `unsubscribe` (workspace events for the calling client, through
//! the router; protocol.md §6.3) and the event log's `log_event`, `get_events` and
//! `get_event_stats` (workspace-api.md §5.5), applied to [`crate::event_log::EventLogs`].

use super::{args, Ctx, Manager};
use crate::error::{ManagerError, ManagerResult};
use crate::events::check_subscription;
use crate::storage::EventFilter;
use rhizo_protocol::user::Permission;
use rhizo_protocol::value::{self, map};
use rmpv::Value;

/// `subscribe(event_type)` / `unsubscribe(event_type)`: one name or a list.
#[derive(Debug)]
pub(crate) struct Subscribe {
    names: Vec<String>,
    on: bool,
}

// === impl Subscribe ===

impl Subscribe {
    /// Errors: [`ManagerError::InvalidArgument`] unless `event_type` is a string or a list.
    pub(crate) fn parse(a: Vec<Value>, on: bool) -> ManagerResult<Self> {
        let [names] = args(a);
        let names = match names {
            Value::String(s) => vec![s.as_str().unwrap_or_default().to_owned()],
            Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => {
                return Err(ManagerError::InvalidArgument(
                    "event_type must be a string or a list of strings".into(),
                ))
            }
        };
        Ok(Subscribe { names, on })
    }

    /// Errors: [`ManagerError::InvalidArgument`] for another workspace's events,
    /// [`ManagerError::Internal`] when the caller's connection is gone.
    pub(crate) fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        if self.on {
            for n in &self.names {
                check_subscription(&ctx.ws, n)?;
            }
        }
        let live = if self.on {
            m.router.subscribe(&ctx.from, &self.names)
        } else {
            m.router.unsubscribe(&ctx.from, &self.names)
        };
        if !live {
            return Err(ManagerError::Internal(format!(
                "Connection not found for client {}",
                ctx.from
            )));
        }
        Ok(Value::Boolean(true))
    }
}

/// `log_event(event_type, data)`.
#[derive(Debug)]
pub(crate) struct LogEvent {
    event_type: Option<String>,
    data: serde_json::Value,
}

// === impl LogEvent ===

impl LogEvent {
    pub(crate) fn parse(a: Vec<Value>) -> Self {
        let [event_type, data] = args(a);
        LogEvent {
            event_type: event_type.as_str().map(str::to_owned),
            data: value::to_json(&data),
        }
    }

    /// Errors: [`ManagerError::Permission`] without write permission,
    /// [`ManagerError::InvalidArgument`] for a type that is not a string, empty or has
    /// spaces, [`ManagerError::Store`].
    pub(crate) async fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::ReadWrite)?;
        let kind = self
            .event_type
            .ok_or_else(|| ManagerError::InvalidArgument("event_type must be a string".into()))?;
        if kind.is_empty() || kind.contains(' ') {
            return Err(ManagerError::InvalidArgument(
                "event_type must not be empty or contain spaces".into(),
            ));
        }
        m.event_logs
            .record(&ctx.ws, &ctx.user.id, &kind, self.data)
            .await?;
        Ok(Value::Nil)
    }
}

/// `get_events(event_type, start_time, end_time)` or, with `stats`, `get_event_stats`:
/// the caller's own rows in its workspace (times in seconds since the epoch, inclusive).
#[derive(Debug)]
pub(crate) struct GetEvents {
    event_type: Option<String>,
    start: Option<f64>,
    end: Option<f64>,
    stats: bool,
}

fn time_arg(v: &Value) -> Option<f64> {
    v.as_f64().or(v.as_i64().map(|i| i as f64))
}

// === impl GetEvents ===

impl GetEvents {
    pub(crate) fn parse(a: Vec<Value>, stats: bool) -> Self {
        let [event_type, start, end] = args(a);
        GetEvents {
            event_type: event_type.as_str().map(str::to_owned),
            start: time_arg(&start),
            end: time_arg(&end),
            stats,
        }
    }

    /// `[{id, event_type, workspace, user_id, timestamp (s), data}]`, oldest first; or
    /// `[{event_type, count}]` by type.
    ///
    /// Errors: [`ManagerError::Permission`] without read permission, [`ManagerError::Store`].
    pub(crate) async fn apply(self, m: &Manager, ctx: &Ctx) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::Read)?;
        let mut filter = EventFilter::new(&ctx.ws, &ctx.user.id);
        filter.event_type = self.event_type;
        filter.start_ms = self.start.map(|s| (s * 1000.0) as i64);
        filter.end_ms = self.end.map(|s| (s * 1000.0) as i64);
        let rows = m.event_logs.rows(&filter).await?;
        if self.stats {
            let mut counts = std::collections::BTreeMap::new();
            for e in rows {
                *counts.entry(e.event_type).or_insert(0u64) += 1;
            }
            return Ok(Value::Array(
                counts
                    .into_iter()
                    .map(|(t, n)| map([("event_type", t.as_str().into()), ("count", n.into())]))
                    .collect(),
            ));
        }
        Ok(Value::Array(
            rows.into_iter()
                .map(|e| {
                    map([
                        ("id", (e.id.max(0) as u64).into()),
                        ("event_type", e.event_type.as_str().into()),
                        ("workspace", e.workspace.as_str().into()),
                        ("user_id", e.user_id.as_str().into()),
                        ("timestamp", Value::F64(e.timestamp_ms as f64 / 1000.0)),
                        (
                            "data",
                            value::from_json(&e.data.unwrap_or(serde_json::Value::Null)),
                        ),
                    ])
                })
                .collect(),
        ))
    }
}
