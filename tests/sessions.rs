//! Session lifecycle (issue: identity and workspaces): token expiry on refresh,
//! revocation of live sessions and their reconnection tokens, the connection, service and
//! workspace quotas, the unload grace period of temporary workspaces, and `cleanup`.

mod common;

use futures_util::{SinkExt, StreamExt};
use rhizo_client::{Client, ClientError, ConnectOptions, Event};
use rhizo_protocol::user::{Permission, UserInfo};
use rhizo_protocol::value::{get, get_str, map};
use rhizo_router::{RouterConfig, RouterControl};
use rmpv::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as Ws;

const T: Duration = Duration::from_secs(5);

/// Waits for the next text frame, or the close (`Err(code, reason)`).
async fn next_text(c: &mut Client) -> Result<serde_json::Value, Option<(u16, String)>> {
    loop {
        match tokio::time::timeout(T, c.next_event())
            .await
            .expect("an event in time")
        {
            Some(Event::Text(v)) => return Ok(v),
            Some(Event::Closed(c)) => return Err(c),
            Some(Event::Frame(_)) => continue,
            None => return Err(None),
        }
    }
}

/// Waits until the server closes `c`; returns the close code and reason.
async fn closed(c: &mut Client) -> Option<(u16, String)> {
    loop {
        match tokio::time::timeout(T, c.next_event())
            .await
            .expect("the connection to end in time")
        {
            Some(Event::Closed(c)) => return c,
            None => return None,
            Some(_) => continue,
        }
    }
}

/// A token for user `id` with `permission` on `ws`, valid `expires_in` seconds, signed by
/// the server's own token service (as `generate_token` would).
fn token_for(s: &common::TestServer, id: &str, ws: &str, expires_in: u64) -> String {
    let mut u = UserInfo::root();
    u.id = id.into();
    u.roles = vec![];
    u.scope.workspaces.insert(ws.into(), Permission::ReadWrite);
    u.scope.current_workspace = Some(ws.into());
    s.manager.tokens.sign(&u, expires_in)
}

async fn connect_with(
    url: &str,
    cid: &str,
    ws: &str,
    token: Option<String>,
    reconnection_token: Option<String>,
) -> Result<Client, ClientError> {
    let opts = ConnectOptions {
        client_id: Some(cid.into()),
        workspace: Some(ws.into()),
        token,
        reconnection_token,
    };
    Client::connect(url, opts).await
}

async fn refresh(c: &mut Client) -> Result<String, Option<(u16, String)>> {
    c.send_text(r#"{"type":"refresh_token"}"#).unwrap();
    loop {
        let t = next_text(c).await?;
        if t["type"] == "reconnection_token" {
            return Ok(t["reconnection_token"].as_str().unwrap().to_owned());
        }
        if t["type"] == "error" {
            // The close follows the error frame.
            return Err(closed(c).await);
        }
    }
}

#[tokio::test]
async fn an_expired_identity_gets_no_new_reconnection_token_and_is_closed() {
    let s = common::start().await;
    let owner = common::connect_as(&s.url, "owner").await;
    let ws = owner.workspace().to_owned();
    let token = token_for(&s, "short-lived", &ws, 2);
    let mut c = connect_with(&s.url, "brief", &ws, Some(token), None)
        .await
        .unwrap();
    // While the token is valid, refresh works, and the reconnection token expires with it.
    let rt = refresh(&mut c).await.unwrap();
    let parsed = s.manager.tokens.verify(&rt).unwrap();
    let exp = parsed.expires_at.unwrap();
    let now = rhizo_control_plane::tokens::now_secs() as f64;
    assert!(
        exp <= now + 2.0,
        "reconnection token outlives its origin: {exp} vs {now}"
    );
    // Whole seconds: `exp` (t0 + 2, t0 rounded down) is past once t0 + 3 has begun.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let close = refresh(&mut c).await.expect_err("refused once expired");
    let (code, reason) = close.expect("a close frame");
    assert_eq!(code, 1008);
    assert!(reason.contains("expired"), "{reason}");
    // And the reconnection token it had cannot bring the session back.
    let err = connect_with(&s.url, "brief", &ws, None, Some(rt))
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(&err, ClientError::Refused(m) if m.contains("expired")),
        "{err}"
    );
    // Tokens without expiry problems keep refreshing.
    let mut fine = common::connect_as(&s.url, "fine").await;
    assert!(refresh(&mut fine).await.is_ok());
}

#[tokio::test]
async fn revoking_a_token_ends_its_sessions_and_their_reconnection_tokens() {
    let s = common::start().await;
    let admin = common::connect_as(&s.url, "admin").await;
    let ws = admin.workspace().to_owned();
    let token = common::mint(&admin).await.unwrap();
    let mut a = connect_with(&s.url, "holder-a", &ws, Some(token.clone()), None)
        .await
        .unwrap();
    let rt = refresh(&mut a).await.unwrap();

    admin
        .manager_call("revoke_token", vec![token.as_str().into()])
        .await
        .unwrap();
    let (code, reason) = closed(&mut a).await.expect("a close frame");
    assert_eq!(code, 1008);
    assert!(reason.contains("revoked"), "{reason}");
    for (t, rt) in [(Some(token.clone()), None), (None, Some(rt))] {
        let err = connect_with(&s.url, "holder-a", &ws, t, rt)
            .await
            .err()
            .expect("refused");
        assert!(
            matches!(&err, ClientError::Refused(m) if m.contains("revoked")),
            "{err}"
        );
    }
    // The admin who revoked it is untouched.
    let echoed = admin.manager_call("echo", vec!["ok".into()]).await.unwrap();
    assert_eq!(echoed.as_str(), Some("ok"));
}

#[tokio::test]
async fn connection_limits_per_user_and_per_workspace() {
    let s = common::start_configured(RouterConfig::default(), |c| {
        c.limits.connections_per_user = 2;
        c.limits.clients_per_workspace = 3;
    })
    .await;
    let owner = common::connect_as(&s.url, "owner").await;
    let ws = owner.workspace().to_owned();
    // One user: the third connection is refused; the same address may reconnect.
    let t = token_for(&s, "alice", &ws, 600);
    let _a1 = connect_with(&s.url, "a1", &ws, Some(t.clone()), None)
        .await
        .unwrap();
    let a2 = connect_with(&s.url, "a2", &ws, Some(t.clone()), None)
        .await
        .unwrap();
    let err = connect_with(&s.url, "a3", &ws, Some(t.clone()), None)
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(&err, ClientError::Refused(m) if m.contains("Too many connections for user alice")),
        "{err}"
    );
    a2.disconnect();
    drop(a2);
    let mut retried = None;
    for _ in 0..50 {
        match connect_with(&s.url, "a3", &ws, Some(t.clone()), None).await {
            Ok(c) => {
                retried = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let _a3 = retried.expect("a freed slot is usable again");
    // The workspace holds owner, a1 and a3: a fourth client (another user) is refused.
    let bob = token_for(&s, "bob", &ws, 600);
    let err = connect_with(&s.url, "b1", &ws, Some(bob), None)
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(&err, ClientError::Refused(m) if m.contains("Too many clients in workspace")),
        "{err}"
    );
}

#[tokio::test]
async fn service_quota_per_client() {
    let s = common::start_configured(RouterConfig::default(), |c| {
        c.limits.services_per_client = 2;
    })
    .await;
    let c = common::connect_as(&s.url, "many").await;
    let nothing = || vec![];
    c.register_service("one", Value::Nil, nothing())
        .await
        .unwrap();
    c.register_service("two", Value::Nil, nothing())
        .await
        .unwrap();
    // Re-registering a held name is not a new service.
    c.register_service("two", Value::Nil, nothing())
        .await
        .unwrap();
    let err = c
        .register_service("three", Value::Nil, nothing())
        .await
        .expect_err("over quota");
    assert!(err.to_string().contains("Service quota exceeded"), "{err}");
}

#[tokio::test]
async fn workspace_quota_per_user() {
    let s = common::start_configured(RouterConfig::default(), |c| {
        c.limits.workspaces_per_user = 2;
    })
    .await;
    let owner = common::connect_as(&s.url, "owner").await;
    let ws = owner.workspace().to_owned();
    let t = token_for(&s, "carol", &ws, 600);
    let carol = connect_with(&s.url, "carol", &ws, Some(t), None)
        .await
        .unwrap();
    let create = |id: &str| {
        let cfg = map([("id", id.into())]);
        carol.manager_call("create_workspace", vec![cfg])
    };
    create("carol-one").await.unwrap();
    create("carol-two").await.unwrap();
    let err = create("carol-three").await.expect_err("over quota");
    assert!(
        err.to_string().contains("Workspace quota exceeded"),
        "{err}"
    );
    // Deleting one frees a slot.
    carol
        .manager_call("delete_workspace", vec!["carol-one".into()])
        .await
        .unwrap();
    create("carol-three").await.unwrap();
}

fn exists(s: &common::TestServer, ws: &str) -> bool {
    s.manager.workspaces.get(ws).is_some()
}

#[tokio::test]
async fn temporary_workspaces_outlive_their_last_client_by_the_grace_period() {
    let s = common::start_configured(RouterConfig::default(), |c| {
        c.workspace_unload_grace = Duration::from_millis(600);
    })
    .await;
    let a = common::connect_as(&s.url, "a").await;
    let ws = a.workspace().to_owned();
    a.disconnect();
    drop(a);
    assert!(
        common::eventually(T, || s.router.client_count(&ws) == 0).await,
        "client gone"
    );
    assert!(exists(&s, &ws), "kept during the grace period");
    // A reconnection within the grace period keeps the workspace.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let owner_token = {
        let mut u = UserInfo::root();
        u.id = ws.trim_start_matches("ws-user-").into();
        u.roles = vec!["anonymous".into()];
        u.is_anonymous = true;
        u.scope.workspaces.insert(ws.clone(), Permission::Admin);
        u.scope.current_workspace = Some(ws.clone());
        s.manager.tokens.sign(&u, 600)
    };
    let back = connect_with(&s.url, "a", &ws, Some(owner_token), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(exists(&s, &ws), "a returning client cancels the unload");
    back.disconnect();
    drop(back);
    assert!(
        common::eventually(Duration::from_secs(3), || !exists(&s, &ws)).await,
        "unloaded after the grace period"
    );
}

#[tokio::test]
async fn without_grace_an_empty_temporary_workspace_goes_at_once() {
    let s = common::start().await;
    let a = common::connect_as(&s.url, "a").await;
    let ws = a.workspace().to_owned();
    a.disconnect();
    drop(a);
    assert!(common::eventually(T, || !exists(&s, &ws)).await);
}

/// A client that completes the handshake and then answers nothing (a dead peer).
async fn silent_client(
    url: &str,
    cid: &str,
    ws: &str,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let ws_url = format!("{}/ws", url.replace("http://", "ws://"));
    let (mut sock, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let hello = serde_json::json!({"client_id": cid, "workspace": ws, "token": token});
    sock.send(Ws::Text(hello.to_string().into())).await.unwrap();
    match tokio::time::timeout(T, sock.next()).await {
        Ok(Some(Ok(Ws::Text(t)))) => assert!(t.as_str().contains("connection_info"), "{t}"),
        other => panic!("no connection_info: {other:?}"),
    }
    sock
}

#[tokio::test]
async fn cleanup_removes_clients_that_do_not_answer() {
    let s = common::start().await;
    let admin = common::connect_as(&s.url, "admin").await;
    let ws = admin.workspace().to_owned();
    let _alive = common::join(&s.url, &admin, "alive").await.unwrap();
    let minted = common::mint(&admin).await.unwrap();
    let mut dead = silent_client(&s.url, "dead", &ws, &minted).await;

    let args = vec![Value::Nil, 1.into()];
    let report = admin.manager_call("cleanup", args).await.unwrap();
    let removed: Vec<&str> = get(&report, "removed_clients")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(removed, vec![format!("{ws}/dead")]);
    // The dead client's connection was closed with a reason.
    let mut saw_close = false;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(T, dead.next()).await {
        if let Ws::Close(Some(f)) = m {
            assert!(f.reason.as_str().contains("cleanup"), "{}", f.reason);
            saw_close = true;
            break;
        }
    }
    assert!(saw_close, "the unresponsive client was disconnected");
    assert!(common::eventually(T, || s.router.client(&format!("{ws}/dead")).is_none()).await);
    // Everyone answers now: nothing to remove.
    let again = admin
        .manager_call("cleanup", vec![Value::Nil, 1.into()])
        .await
        .unwrap();
    assert_eq!(again, Value::Map(vec![]));
    // A read-write member may not clean up.
    let member = common::join(&s.url, &admin, "member").await.unwrap();
    let err = member
        .manager_call("cleanup", vec![])
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("PermissionError"), "{err}");
}

#[tokio::test]
async fn cleanup_removes_an_empty_temporary_workspace() {
    let s = common::start().await;
    let t = token_for(&s, "dave", "ws-user-dave", 600);
    let dave = connect_with(&s.url, "dave", "ws-user-dave", Some(t), None)
        .await
        .unwrap();
    dave.manager_call(
        "create_workspace",
        vec![map([("id", "dave-scratch".into())])],
    )
    .await
    .unwrap();
    let report = dave
        .manager_call("cleanup", vec!["dave-scratch".into()])
        .await
        .unwrap();
    assert_eq!(get_str(&report, "removed_workspace"), Some("dave-scratch"));
    assert!(!exists(&s, "dave-scratch"));
    // Persistent ones stay.
    let cfg = map([("id", "dave-keep".into()), ("persistent", true.into())]);
    dave.manager_call("create_workspace", vec![cfg])
        .await
        .unwrap();
    let report = dave
        .manager_call("cleanup", vec!["dave-keep".into()])
        .await
        .unwrap();
    assert_eq!(report, Value::Map(vec![]));
    assert!(exists(&s, "dave-keep"));
}

#[tokio::test]
async fn a_registered_users_workspace_stays_after_its_last_client() {
    let s = common::start().await;
    let t = token_for(&s, "erin", "ws-user-erin", 600);
    let c = connect_with(&s.url, "erin-1", "ws-user-erin", Some(t), None)
        .await
        .unwrap();
    c.manager_call("set_env", vec!["K".into(), "v".into()])
        .await
        .unwrap();
    c.disconnect();
    drop(c);
    assert!(common::eventually(T, || s.router.client_count("ws-user-erin") == 0).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let info = s.manager.workspaces.get("ws-user-erin").expect("kept");
    assert!(info.persistent);
    assert_eq!(info.config["environs"]["K"], "v");
}

#[tokio::test]
async fn handshakes_beyond_the_concurrency_limit_wait_then_get_server_busy() {
    let s = common::start_configured(RouterConfig::default(), |c| {
        c.limits.concurrent_handshakes = 1;
        c.limits.handshake_wait = Duration::from_millis(300);
    })
    .await;
    let owner = common::connect_as(&s.url, "owner").await;
    let ws = owner.workspace().to_owned();
    let token = common::mint(&owner).await.unwrap();
    // A peer that never answers holds address `held`; a second handshake for that address
    // keeps the only turn while the server pings the first one (3 s).
    let _silent = silent_client(&s.url, "held", &ws, &token).await;
    let url = s.url.clone();
    let (w, t) = (ws.clone(), token.clone());
    let blocking = tokio::spawn(async move { connect_with(&url, "held", &w, Some(t), None).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ws_url = format!("{}/ws", s.url.replace("http://", "ws://"));
    let (mut sock, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    sock.send(Ws::Text(r#"{"client_id":"late"}"#.into()))
        .await
        .unwrap();
    let mut refusal = None;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(T, sock.next()).await {
        if let Ws::Close(Some(f)) = m {
            refusal = Some((u16::from(f.code), f.reason.to_string()));
            break;
        }
    }
    assert_eq!(
        refusal,
        Some((1013, "Server busy, please retry".to_owned()))
    );
    // The blocked handshake still completes (the silent peer is replaced), and the turn
    // is free again afterwards.
    let replaced = blocking.await.unwrap();
    assert!(replaced.is_ok(), "{:?}", replaced.err());
    let after = Client::connect(&s.url, ConnectOptions::default()).await;
    assert!(after.is_ok());
}

/// The manager's `message_cache` bounds what one client may hold: a number of uploads and
/// their bytes together; a departed client's uploads are freed.
#[tokio::test]
async fn message_cache_uploads_are_bounded_per_client_and_freed_on_disconnect() {
    let s = common::start_configured(RouterConfig::default(), |c| {
        c.limits.cache_entries_per_client = 2;
        c.limits.cache_bytes_per_client = 1000;
    })
    .await;
    let c = common::connect_as(&s.url, "uploader").await;
    let manager = s.manager.addr().to_owned();
    let cache = |name: &str| format!("services.built-in.message_cache.{name}");
    c.call(&manager, &cache("create"), vec!["k1".into()], T)
        .await
        .unwrap();
    c.call(&manager, &cache("create"), vec!["k2".into()], T)
        .await
        .unwrap();
    let third = c
        .call(&manager, &cache("create"), vec!["k3".into()], T)
        .await;
    assert!(
        matches!(&third, Err(ClientError::Remote(e)) if e.contains("too many messages") && e.contains("limit 2")),
        "{third:?}"
    );
    let chunk = || Value::Binary(vec![7; 600]);
    c.call(&manager, &cache("append"), vec!["k1".into(), chunk()], T)
        .await
        .unwrap();
    let over = c
        .call(&manager, &cache("append"), vec!["k2".into(), chunk()], T)
        .await;
    assert!(
        matches!(&over, Err(ClientError::Remote(e)) if e.contains("exceeds 1000 bytes")),
        "{over:?}"
    );
    let addr = format!("{}/uploader", c.workspace());
    assert_eq!(s.manager.cache_usage(&addr), (2, 600));
    // Removing an upload frees its slot and bytes.
    c.call(&manager, &cache("remove"), vec!["k1".into()], T)
        .await
        .unwrap();
    assert_eq!(s.manager.cache_usage(&addr), (1, 0));
    c.call(&manager, &cache("create"), vec!["k3".into()], T)
        .await
        .unwrap();
    c.call(&manager, &cache("append"), vec!["k3".into(), chunk()], T)
        .await
        .unwrap();
    drop(c);
    assert!(common::eventually(T, || s.manager.cache_usage(&addr) == (0, 0)).await);
}

/// Calls into the manager are bounded per client: over the bound a call is refused at
/// once with a reject naming the limit, not queued; slots come back when calls finish.
#[tokio::test]
async fn manager_calls_beyond_the_per_client_bound_are_refused_at_once() {
    let s = common::start_configured(RouterConfig::default(), |c| {
        c.limits.manager_calls_per_client = 2;
    })
    .await;
    let admin = common::connect_as(&s.url, "admin").await;
    let ws = admin.workspace().to_owned();
    let token = common::mint(&admin).await.unwrap();
    let _silent = silent_client(&s.url, "mute", &ws, &token).await;
    let admin = std::sync::Arc::new(admin);
    // Two pings of a peer that never answers keep two manager calls running for 3 s.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let a = admin.clone();
        slow.push(tokio::spawn(async move {
            a.manager_call("ping", vec!["mute".into(), 3.into()]).await
        }));
    }
    assert!(common::eventually(T, || s.manager.calls_running() == 2).await);
    let third = admin.manager_call("echo", vec!["x".into()]).await;
    assert!(
        matches!(&third, Err(ClientError::Remote(e)) if e.contains("too many calls") && e.contains("limit 2")),
        "{third:?}"
    );
    for h in slow {
        let r = h.await.unwrap().unwrap();
        assert!(
            r.as_str().unwrap_or_default().contains("Failed to ping"),
            "{r:?}"
        );
    }
    assert!(common::eventually(T, || s.manager.calls_running() == 0).await);
    let again = admin.manager_call("echo", vec!["x".into()]).await.unwrap();
    assert_eq!(again.as_str(), Some("x"));
}

/// A temporary workspace whose last clients leave while another client is being admitted
/// to it (here: held up by the duplicate-client ping) is not unloaded under that
/// admission: the new client lands in a workspace that still exists.
#[tokio::test]
async fn a_workspace_is_not_unloaded_while_a_client_is_being_admitted() {
    let s = common::start().await;
    let owner = common::connect_as(&s.url, "owner").await;
    let ws = owner.workspace().to_owned();
    let token = common::mint(&owner).await.unwrap();
    let mut stale = silent_client(&s.url, "dup", &ws, &token).await;
    let opts = ConnectOptions {
        client_id: Some("dup".into()),
        workspace: Some(ws.clone()),
        token: Some(token),
        ..Default::default()
    };
    let url = s.url.clone();
    let joining = tokio::spawn(async move { Client::connect(&url, opts).await });
    // The admission now waits on its ping of the stale "dup"; everyone else leaves.
    assert!(common::eventually(T, || s.manager.workspaces.get(&ws).is_some()).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(owner);
    stale.close(None).await.unwrap();
    let joined = joining.await.unwrap().expect("admitted");
    assert_eq!(joined.workspace(), ws);
    assert!(
        s.manager.workspaces.get(&ws).is_some(),
        "the workspace was unloaded under a client being admitted to it"
    );
    // It still works as a workspace: the new client registers and lists its service.
    joined
        .register_service("svc", Value::Nil, vec![])
        .await
        .unwrap();
    drop(joined);
    assert!(common::eventually(T, || s.manager.workspaces.get(&ws).is_none()).await);
}
