//! Fixtures shared by the micro-benchmarks in `benches/benches/` and the allocation-budget
//! test: call frames of a given payload size, and a router with connected clients whose
//! egress queues the caller drains.

use bytes::Bytes;
use rhizo_protocol::handshake::AuthRequest;
use rhizo_protocol::message::encode_frame;
use rhizo_protocol::value::{self, map};
use rhizo_router::hooks::{Admission, BoxFuture, ConnRef, Refusal};
use rhizo_router::internals::{self, Conn, Egress, Outbound};
use rhizo_router::{ControlHooks, Router, RouterConfig};
use rmpv::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// A call frame as a Python client sends it: header plus an extra segment holding one
/// binary argument of `payload` bytes.
pub fn call_frame(to: &str, payload: usize) -> Bytes {
    let header = map([
        ("type", "method".into()),
        ("to", to.into()),
        ("method", "services.echo.echo".into()),
        ("session", "a1b2c3d4e5f6g7h8i9j0k1".into()),
    ]);
    let extra = map([
        (
            "args",
            Value::Array(vec![Value::Binary(vec![0x5a; payload])]),
        ),
        ("promise", "*".into()),
        ("t", Value::F64(15.0)),
    ]);
    Bytes::from(encode_frame(&header, Some(&extra)))
}

fn refusal() -> Refusal {
    Refusal {
        message: "benchmark".into(),
        code: 1008,
    }
}

/// Control-plane hooks that accept nothing and drop manager frames.
#[derive(Debug)]
pub struct NullHooks;

impl ControlHooks for NullHooks {
    fn admit(&self, _conn_id: u64, _req: AuthRequest) -> BoxFuture<'_, Result<Admission, Refusal>> {
        Box::pin(async { Err(refusal()) })
    }
    fn refresh_token(&self, _conn: ConnRef<'_>) -> Result<String, Refusal> {
        Err(refusal())
    }
    fn manager_frame(&self, _frame: Bytes) {}
    fn disconnected(&self, _conn: ConnRef<'_>, _foreign_callers: Vec<String>) {}
}

/// A router with null hooks and a large egress limit.
pub fn router() -> Router {
    let r = Router::new(
        "manager-bench",
        RouterConfig {
            egress_limit_bytes: 1 << 30,
            ..RouterConfig::default()
        },
    );
    r.set_hooks(Arc::new(NullHooks));
    r
}

/// Registers client `ws/cid` with a realistic user record; returns it and its queue.
pub fn connect(
    router: &Router,
    id: u64,
    ws: &str,
    cid: &str,
) -> (Arc<Conn>, UnboundedReceiver<Outbound>) {
    let (egress, rx) = Egress::new(router.config().egress_limit_bytes, Duration::from_secs(10));
    let user = map([
        ("id", format!("anonymouz-{cid}").into()),
        ("roles", Value::Array(vec!["anonymous".into()])),
        ("is_anonymous", true.into()),
        ("email", Value::Nil),
        (
            "scope",
            map([
                ("current_workspace", ws.into()),
                ("workspaces", map([(ws, "a".into())])),
                ("client_id", cid.into()),
                ("extra_scopes", Value::Array(vec![])),
            ]),
        ),
    ]);
    let conn = Arc::new(Conn::new(
        id,
        ws,
        cid,
        Bytes::from(value::encode(&user)),
        true,
        egress,
    ));
    internals::table(router).insert(conn.clone());
    (conn, rx)
}
