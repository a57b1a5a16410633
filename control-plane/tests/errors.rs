//! The HTTP status of each kind of control-plane error is chosen by its `ManagerError`
//! variant (workspace-api.md §8.3), and the detail is the error's wire text. The routes are
//! served on `127.0.0.1:0` over a router that has no clients: every provider found in the
//! registry is "not connected".

use bytes::Bytes;
use rhizo_control_plane::registry::ServiceRecord;
use rhizo_control_plane::storage::{MemoryStore, Store, WorkspaceRecord};
use rhizo_control_plane::{Manager, ServerConfig};
use rhizo_interface::{ClientPresence, CloseReason, CountersSnapshot, RouterControl};
use rhizo_protocol::user::{Permission, ScopeInfo, UserInfo};
use rhizo_protocol::value::from_json;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A router without connections: nothing is delivered, nobody is subscribed.
struct NoClients;

impl RouterControl for NoClients {
    fn manager_addr(&self) -> &str {
        "*/manager-test"
    }
    fn deliver(&self, _to: &str, _frame: Bytes) -> bool {
        false
    }
    fn broadcast(&self, _ws: &str, _kind: &str, _frame: Bytes) {}
    fn deliver_event(&self, _to: &str, _kind: &str, _frame: Bytes) {}
    fn subscribe(&self, _addr: &str, _events: &[String]) -> bool {
        false
    }
    fn unsubscribe(&self, _addr: &str, _events: &[String]) -> bool {
        false
    }
    fn close(&self, _addr: &str, _conn_id: Option<u64>, _reason: CloseReason) -> bool {
        false
    }
    fn client(&self, _addr: &str) -> Option<ClientPresence> {
        None
    }
    fn presence(&self, _ws: &str) -> Vec<ClientPresence> {
        Vec::new()
    }
    fn client_count(&self, _ws: &str) -> usize {
        0
    }
    fn workspace_counts(&self) -> Vec<(String, usize)> {
        Vec::new()
    }
    fn counters(&self) -> CountersSnapshot {
        CountersSnapshot::default()
    }
}

fn register(m: &Manager, id: &str, visibility: &str) {
    let record = from_json(&json!({"id": id, "name": "svc", "config": {"visibility": visibility}}));
    m.registry
        .add(ServiceRecord::from_value(record).unwrap())
        .unwrap();
}

/// A registered user `alice`, read-write in `ws-a` and current there.
fn alice() -> UserInfo {
    let mut scope = ScopeInfo {
        current_workspace: Some("ws-a".into()),
        ..Default::default()
    };
    scope
        .workspaces
        .insert("ws-a".into(), Permission::ReadWrite);
    UserInfo {
        id: "alice".into(),
        roles: Vec::new(),
        is_anonymous: false,
        scope,
        email: None,
        parent: None,
        expires_at: None,
        current_workspace: Some("ws-a".into()),
    }
}

/// The stored record of `ws-a`: persistent, owned by alice.
fn workspace_a() -> WorkspaceRecord {
    WorkspaceRecord {
        id: "ws-a".into(),
        name: "ws-a".into(),
        description: String::new(),
        persistent: true,
        owners: vec!["alice".into()],
        read_only: false,
        config: Default::default(),
        service_types: Default::default(),
    }
}

/// The control plane with: `ws-a` (owned by alice) holding a protected service `calc` and
/// a public service `twin` registered by two clients; a limit of one workspace per user.
/// Returns the manager and the base URL of its HTTP routes.
async fn serve() -> (Arc<Manager>, String) {
    let mut config = ServerConfig::default();
    config.limits.workspaces_per_user = 1;
    // ws-a is in the store before start: the manager loads it.
    let store = Arc::new(MemoryStore::new());
    store.put_workspace(&workspace_a()).await.unwrap();
    let (m, _hooks) = rhizo_control_plane::start(config, Arc::new(NoClients), store)
        .await
        .unwrap();
    assert!(m.workspaces.get("ws-a").is_some());
    register(&m, "ws-a/c1:calc", "protected");
    register(&m, "ws-a/c1:twin", "public");
    register(&m, "ws-a/c2:twin", "public");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = rhizo_control_plane::http::routes(m.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (m, format!("{addr}"))
}

/// `GET path` with an optional bearer token: the status and the JSON body.
async fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()));
    (status, body)
}

fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn info_route_is_403_for_permission_errors_and_404_for_the_rest() {
    let (_m, addr) = serve().await;
    let (status, body) = get(&addr, "/ws-a/services/c1:calc", None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["success"], false);
    assert_eq!(
        detail(&body),
        "PermissionError: Permission denied for non-public service in workspace ws-a"
    );
    let (status, body) = get(&addr, "/ws-a/services/nope", None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(detail(&body), "KeyError: Service not found: ws-a/*:nope@*");
    // Two providers and mode "exact": a ValueError, 400 on a call route, 404 here.
    let (status, body) = get(&addr, "/ws-a/services/twin", None).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        detail(&body).starts_with("ValueError: Multiple services found"),
        "{body}"
    );
    let (status, body) = get(&addr, "/ws-a/services/twin/f", None).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn call_route_statuses_follow_the_variant() {
    let (m, addr) = serve().await;
    let token = m.tokens.sign(&alice(), 600);
    let t = Some(token.as_str());
    // Alice owns ws-a already, and may own one workspace.
    let create = "/ws-a/services/ws/create_workspace?config=%7B%22id%22%3A%22ws-alice-2%22%7D";
    let (status, body) = get(&addr, create, t).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        detail(&body),
        "RuntimeError: Workspace quota exceeded: user alice owns 1 workspaces (limit 1)"
    );
    let (status, body) = get(&addr, "/ws-a/services/ws/no_such", t).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(detail(&body), "Method not found: services.default.no_such");
    let (status, body) = get(&addr, "/ws-a/services/ws/echo?zzz=1", t).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        detail(&body),
        "TypeError: echo() got an unexpected keyword argument 'zzz'",
        "one class prefix: the one of bind's text is replaced, not doubled"
    );
    // The registry names a provider the router does not have.
    let (status, body) = get(&addr, "/ws-a/services/c1:calc/add", t).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        detail(&body),
        "ConnectionError: Peer ws-a/c1 is not connected"
    );
    let (status, body) = get(&addr, "/ws-a/services/c1:calc/add", Some("not-a-token")).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn workspace_info_route() {
    let (m, addr) = serve().await;
    let (status, body) = get(&addr, "/ws-a/info", None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        detail(&body),
        "PermissionError: Permission denied for workspace ws-a"
    );
    let token = m.tokens.sign(&alice(), 600);
    let (status, body) = get(&addr, "/ws-a/info", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "ws-a");
}
