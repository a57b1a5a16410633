//! A control-plane service in the shape later crates (artifacts, server apps) take: exposed
//! by the manager as `public/<id>`, called by clients through the object `get_service`
//! returns, with the caller's trusted context, typed errors and HTTP routes of its own.

use rhizo::{Server, Settings};
use rhizo_client::{Client, ClientError, ConnectOptions};
use rhizo_control_plane::service::{BoxFuture, ControlService, FunctionSpec};
use rhizo_control_plane::{Ctx, ManagerError, ManagerResult};
use rhizo_protocol::value::{get, get_str};
use rmpv::Value;
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// Counts per workspace; refuses anonymous callers on `reset`.
#[derive(Default)]
struct Tally {
    counts: std::sync::Mutex<std::collections::BTreeMap<String, i64>>,
}

impl ControlService for Tally {
    fn id(&self) -> &'static str {
        "tally"
    }
    fn name(&self) -> &str {
        "Tally"
    }
    fn functions(&self) -> &'static [FunctionSpec] {
        &[
            FunctionSpec {
                name: "add",
                params: &[("n", true)],
                doc: "Adds n (default 1) to the caller's workspace count.",
            },
            FunctionSpec {
                name: "reset",
                params: &[],
                doc: "Resets the caller's workspace count.",
            },
        ]
    }
    fn call<'a>(
        &'a self,
        ctx: &'a Ctx,
        function: &'a str,
        args: Vec<Value>,
    ) -> BoxFuture<'a, ManagerResult<Value>> {
        Box::pin(async move {
            let mut counts = self.counts.lock().unwrap();
            match function {
                "add" => {
                    let n = match &args[0] {
                        Value::Nil => 1,
                        v => v.as_i64().ok_or_else(|| {
                            ManagerError::InvalidArgument("n must be an integer".into())
                        })?,
                    };
                    let c = counts.entry(ctx.ws.clone()).or_default();
                    *c += n;
                    Ok(Value::from(*c))
                }
                _ => {
                    if ctx.user.is_anonymous {
                        return Err(ManagerError::Permission(
                            "anonymous users may not reset".into(),
                        ));
                    }
                    counts.remove(&ctx.ws);
                    Ok(Value::Nil)
                }
            }
        })
    }
    fn routes(&self) -> Option<axum::Router> {
        Some(
            axum::Router::new().route("/tally/health", axum::routing::get(|| async { "tally ok" })),
        )
    }
}

#[tokio::test]
async fn a_control_plane_service_is_exposed_through_the_manager() {
    let settings =
        Settings::parse_from(["rhizo", "--port", "0", "--jwt-secret", "cs-secret"]).unwrap();
    let server = Server::builder(settings)
        .in_memory()
        .service(Arc::new(Tally::default()))
        .bind()
        .await
        .unwrap();
    let c = Client::connect(server.url(), ConnectOptions::default())
        .await
        .unwrap();
    let svc = c
        .manager_call("get_service", vec!["public/tally".into()])
        .await
        .unwrap();
    let manager = server.manager().addr().to_owned();
    let add = get(&svc, "add").expect("the object has the function");
    assert_eq!(get_str(add, "_rtarget"), Some(manager.as_str()));
    let method = get_str(add, "_rmethod").unwrap().to_owned();
    assert_eq!(method, "services.tally.add");
    // The same object under its full id.
    let full = get_str(&svc, "id").unwrap().to_owned();
    let again = c
        .manager_call("get_service", vec![full.as_str().into()])
        .await
        .unwrap();
    assert_eq!(get_str(&again, "id"), Some(full.as_str()));

    assert_eq!(
        c.call(&manager, &method, vec![], T).await.unwrap(),
        Value::from(1)
    );
    assert_eq!(
        c.call(&manager, &method, vec![5.into()], T).await.unwrap(),
        Value::from(6)
    );
    // Typed errors reach the caller as Python exceptions.
    let bad = c.call(&manager, &method, vec!["x".into()], T).await;
    assert!(
        matches!(&bad, Err(ClientError::Remote(e)) if e == "ValueError: n must be an integer"),
        "{bad:?}"
    );
    let denied = c.call(&manager, "services.tally.reset", vec![], T).await;
    assert!(
        matches!(&denied, Err(ClientError::Remote(e)) if e.starts_with("PermissionError")),
        "{denied:?}"
    );
    let unknown = c.call(&manager, "services.tally.nope", vec![], T).await;
    assert!(
        matches!(&unknown, Err(ClientError::Remote(e)) if e == "Method not found: services.tally.nope"),
        "{unknown:?}"
    );
    let extra = c.call(&manager, &method, vec![1.into(), 2.into()], T).await;
    assert!(
        matches!(&extra, Err(ClientError::Remote(e)) if e.starts_with("TypeError: add()")),
        "{extra:?}"
    );
    // Another workspace has its own count: the service saw each caller's trusted workspace.
    let other = Client::connect(server.url(), ConnectOptions::default())
        .await
        .unwrap();
    assert_eq!(
        other.call(&manager, &method, vec![], T).await.unwrap(),
        Value::from(1)
    );
    // Unknown control-plane services are not found.
    let missing = c
        .manager_call("get_service", vec!["public/no-such".into()])
        .await;
    assert!(missing.is_err());

    // Its HTTP routes are served beside the control plane's.
    let host = server.url().trim_start_matches("http://").to_owned();
    let body = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&host).unwrap();
        write!(s, "GET /tally/health HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    })
    .await
    .unwrap();
    assert!(
        body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
        "{body}"
    );
    assert!(body.ends_with("tally ok"), "{body}");
    server.shutdown().await;
}
