//! `ping(client_id, timeout)`, `echo(data)` and `log(msg)` (workspace-api.md §5.2).

use super::{args, num, Ctx, Manager};
use crate::error::ManagerResult;
use rhizo_protocol::user::Permission;
use rmpv::Value;
use std::time::Duration;

/// `ping(client_id, timeout)`.
#[derive(Debug)]
pub(crate) struct Ping {
    client_id: Value,
    timeout: Option<f64>,
}

// === impl Ping ===

impl Ping {
    pub(crate) fn parse(a: Vec<Value>) -> Self {
        let [client_id, timeout] = args(a);
        Ping {
            client_id,
            timeout: num(Some(&timeout)),
        }
    }

    pub(crate) async fn apply(self, m: &Manager, ctx: &Ctx) -> Value {
        m.ping(ctx, &self.client_id, self.timeout).await
    }
}

// === impl Manager (ping) ===

impl Manager {
    /// Pings client `client_id` (`cid` in the caller's workspace, or `ws/cid`) through
    /// its `built-in` service, waiting `timeout` seconds (5 unless positive). Never fails:
    /// `"pong"`, or `"Failed to ping client <ws/cid>: <why>"` (also when the caller may not
    /// read that workspace).
    pub(in crate::manager) async fn ping(
        &self,
        ctx: &Ctx,
        client_id: &Value,
        timeout: Option<f64>,
    ) -> Value {
        let raw = client_id.as_str().unwrap_or_default();
        let target = if raw.contains('/') {
            raw.to_owned()
        } else {
            format!("{}/{raw}", ctx.ws)
        };
        let ws = target.split_once('/').map(|(w, _)| w).unwrap_or_default();
        if let Err(e) = ctx.require(ws, Permission::Read) {
            return format!("Failed to ping client {target}: {e}").into();
        }
        let t = Duration::from_secs_f64(timeout.filter(|t| *t > 0.0).unwrap_or(5.0));
        match self
            .call_client(&target, "services.built-in.ping", vec!["ping".into()], t)
            .await
        {
            Ok(v) if v.as_str() == Some("pong") => "pong".into(),
            Ok(v) => format!("Failed to ping client {target}: unexpected answer {v}").into(),
            Err(e) => format!("Failed to ping client {target}: {e}").into(),
        }
    }
}

/// `echo(data)`: returns `data`.
#[derive(Debug)]
pub(crate) struct Echo {
    data: Value,
}

// === impl Echo ===

impl Echo {
    pub(crate) fn parse(a: Vec<Value>) -> Self {
        let [data] = args(a);
        Echo { data }
    }

    /// Errors: [`crate::ManagerError::Permission`] without write permission.
    pub(crate) fn apply(self, ctx: &Ctx) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::ReadWrite)?;
        Ok(self.data)
    }
}

/// `log(msg)`: writes `msg` to the server log at INFO.
#[derive(Debug)]
pub(crate) struct Log {
    msg: Value,
}

// === impl Log ===

impl Log {
    pub(crate) fn parse(a: Vec<Value>) -> Self {
        let [msg] = args(a);
        Log { msg }
    }

    /// Errors: [`crate::ManagerError::Permission`] without write permission.
    pub(crate) fn apply(self, ctx: &Ctx) -> ManagerResult<Value> {
        ctx.require(&ctx.ws, Permission::ReadWrite)?;
        let text = self
            .msg
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| self.msg.to_string());
        tracing::info!(client = %ctx.from, "{text}");
        Ok(Value::Nil)
    }
}
