//! The control plane across in-process nodes sharing the real Redis (issue 10): services
//! found, listed and called from another node, unregistration, a node's shutdown and late
//! start, revocations, workspace records created, changed and deleted on one node and seen
//! on another, the workspace client quota and the singleton rule across nodes. The set-up
//! is `common/cluster.rs`.

mod common;

use common::cluster::*;
use common::{connect_as, eventually, join};
use rhizo_client::{handler, Event};
use rhizo_protocol::value::{get, get_str, map};
use rmpv::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_of_one_node_are_found_listed_and_called_from_another() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("registry");
    let (a, b) = (node("a", &p).await, node("b", &p).await);
    let prov = provider(a.url(), "prov").await;
    let ws = prov.workspace().to_owned();
    let id = format!("{ws}/prov:svc");
    let caller = join(b.url(), &prov, "caller").await.unwrap();
    let stranger = connect_as(b.url(), "stranger").await;

    assert!(
        listed_eventually(&caller, Value::Nil, &id, true, T).await,
        "B lists A's service"
    );
    assert!(listed(&caller, Value::Nil)
        .await
        .contains(&format!("{ws}/prov:built-in")));
    assert_eq!(
        echo_through_object(&caller, "prov:svc", "same ws").await,
        Ok(Value::from("same ws"))
    );
    // A public service of another workspace, from a client of B's own workspace.
    assert_eq!(
        echo_through_object(&stranger, &id, "other ws").await,
        Ok(Value::from("other ws"))
    );
    let info = stranger
        .manager_call("get_service_info", vec![id.as_str().into()])
        .await
        .unwrap();
    assert_eq!(get_str(&info, "id"), Some(id.as_str()));
    let clients = caller.manager_call("list_clients", vec![]).await.unwrap();
    let ids: Vec<&str> = clients
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| get_str(c, "id"))
        .collect();
    assert!(ids.contains(&format!("{ws}/prov").as_str()), "{ids:?}");
    assert!(ids.contains(&format!("{ws}/caller").as_str()), "{ids:?}");

    prov.manager_call("unregister_service", vec!["svc".into()])
        .await
        .unwrap();
    assert!(
        listed_eventually(&caller, Value::Nil, &id, false, T).await,
        "unregistered on A, gone on B"
    );
    let err = echo_through_object(&stranger, &id, "x").await.unwrap_err();
    assert!(err.contains("not found"), "{err}");
    drop((prov, caller, stranger));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shutdown_removes_its_services_and_tells_subscribers_at_once() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("node-left");
    let (a, b) = (node("a", &p).await, node("b", &p).await);
    let prov = provider(a.url(), "prov").await;
    let ws = prov.workspace().to_owned();
    let id = format!("{ws}/prov:svc");
    let mut sub = join(b.url(), &prov, "sub").await.unwrap();
    sub.manager_call(
        "subscribe",
        vec![Value::Array(vec!["client_disconnected".into()])],
    )
    .await
    .unwrap();
    assert!(listed_eventually(&sub, Value::Nil, &id, true, T).await);
    let stopped = std::time::Instant::now();
    a.shutdown().await;
    assert!(
        listed_eventually(&sub, Value::Nil, &id, false, Duration::from_millis(1500)).await,
        "B still lists A's service {:?} after A's shutdown",
        stopped.elapsed()
    );
    let event = tokio::time::timeout(T, async {
        loop {
            match sub.next_event().await {
                Some(Event::Frame(m)) => {
                    let kind = get_str(&m.merged, "type").map(str::to_owned);
                    if kind.as_deref() == Some("client_disconnected") {
                        return Some(m.merged);
                    }
                }
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
    .expect("the subscriber on B heard client_disconnected");
    let data = get(&event, "data").expect("data");
    assert_eq!(get_str(data, "workspace"), Some(ws.as_str()));
    drop((prov, sub));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_later_sees_the_existing_services() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("late");
    let a = node("a", &p).await;
    let prov = provider(a.url(), "prov").await;
    let id = format!("{}/prov:svc", prov.workspace());
    let b = node("b", &p).await;
    let c = connect_as(b.url(), "late-caller").await;
    assert!(
        listed_eventually(&c, "*".into(), &id, true, T).await,
        "B, started after the registration, lists it"
    );
    assert_eq!(
        echo_through_object(&c, &id, "late").await,
        Ok(Value::from("late"))
    );
    drop((prov, c));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_on_one_node_closes_its_session_on_another() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("revoke");
    let (a, b) = (node("a", &p).await, node("b", &p).await);
    let owner = connect_as(a.url(), "owner").await;
    let ws = owner.workspace().to_owned();
    let token = common::mint(&owner).await.unwrap();
    let mut held = rhizo_client::Client::connect(
        a.url(),
        rhizo_client::ConnectOptions {
            client_id: Some("held".into()),
            workspace: Some(ws.clone()),
            token: Some(token.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let admin_token = owner
        .manager_call(
            "generate_token",
            vec![map([("permission", "admin".into())])],
        )
        .await
        .unwrap();
    let admin = rhizo_client::Client::connect(
        b.url(),
        rhizo_client::ConnectOptions {
            client_id: Some("admin".into()),
            workspace: Some(ws.clone()),
            token: admin_token.as_str().map(str::to_owned),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    admin
        .manager_call("revoke_token", vec![token.as_str().into()])
        .await
        .unwrap();
    let closed = tokio::time::timeout(T, async {
        while let Some(e) = held.next_event().await {
            if matches!(e, Event::Closed(_)) {
                break;
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the session on A opened with the token was closed"
    );
    assert!(eventually(T, || !knows(&b, &ws, "held")).await);
    drop((owner, admin));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_records_cross_nodes() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("workspaces");
    let (a, b) = (node("a", &p).await, node("b", &p).await);
    let ws = "shared-ws";
    let root_a = connect_to(a.url(), "root-a", "ws-user-root", ROOT)
        .await
        .unwrap();
    let root_b = connect_to(b.url(), "root-b", "ws-user-root", ROOT)
        .await
        .unwrap();
    let created = root_a
        .manager_call(
            "create_workspace",
            vec![map([("id", ws.into()), ("persistent", true.into())])],
        )
        .await
        .unwrap();
    assert_eq!(get_str(&created, "id"), Some(ws));
    let token = root_a
        .manager_call(
            "generate_token",
            vec![map([
                ("workspace", ws.into()),
                ("permission", "read_write".into()),
            ])],
        )
        .await
        .unwrap();
    let token = token.as_str().unwrap().to_owned();

    // Created on A: B admits a client with a token for it, lists it and describes it.
    let member = connect_eventually(b.url(), "member", ws, &token).await;
    let listed = root_b
        .manager_call("list_workspaces", vec![])
        .await
        .unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| get_str(w, "id"))
        .collect();
    assert!(ids.contains(&ws), "{ids:?}");
    let info = root_b
        .manager_call("get_workspace_info", vec![ws.into()])
        .await
        .unwrap();
    assert_eq!(
        get(&info, "persistent").and_then(Value::as_bool),
        Some(true)
    );
    // The bookmark made in root's personal workspace travelled too.
    let root_info = root_b
        .manager_call("get_workspace_info", vec!["ws-user-root".into()])
        .await
        .unwrap();
    assert!(format!("{root_info:?}").contains(ws), "{root_info:?}");

    // set_env on A is read by get_env on B.
    let writer = connect_to(a.url(), "writer", ws, &token).await.unwrap();
    writer
        .manager_call("set_env", vec!["colour".into(), "blue".into()])
        .await
        .unwrap();
    let mut seen = Value::Nil;
    let deadline = tokio::time::Instant::now() + T;
    while tokio::time::Instant::now() < deadline {
        if let Ok(v) = member.manager_call("get_env", vec!["colour".into()]).await {
            seen = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, Value::from("blue"));

    // Deleted on A: B refuses new admissions and no longer describes it.
    root_a
        .manager_call("delete_workspace", vec![ws.into()])
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + T;
    let mut refused = None;
    while refused.is_none() && tokio::time::Instant::now() < deadline {
        match connect_to(b.url(), "late", ws, &token).await {
            Err(e) => refused = Some(e.to_string()),
            Ok(c) => {
                drop(c);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let refused = refused.expect("B refuses the deleted workspace");
    assert!(refused.contains("does not exist"), "{refused}");
    assert!(root_b
        .manager_call("get_workspace_info", vec![ws.into()])
        .await
        .is_err());
    drop((root_a, root_b, member, writer));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_later_and_temporary_workspaces() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("ws-late");
    let a = node("a", &p).await;
    let root_a = connect_to(a.url(), "root-a", "ws-user-root", ROOT)
        .await
        .unwrap();
    root_a
        .manager_call(
            "create_workspace",
            vec![map([
                ("id", "temp-ws".into()),
                ("persistent", false.into()),
            ])],
        )
        .await
        .unwrap();
    let token = root_a
        .manager_call(
            "generate_token",
            vec![map([
                ("workspace", "temp-ws".into()),
                ("permission", "read_write".into()),
            ])],
        )
        .await
        .unwrap();
    let token = token.as_str().unwrap().to_owned();
    let on_a = connect_to(a.url(), "on-a", "temp-ws", &token)
        .await
        .unwrap();
    // B starts later: A's snapshot brings the temporary workspace.
    let b = node("b", &p).await;
    let on_b = connect_eventually(b.url(), "on-b", "temp-ws", &token).await;
    // The client on B leaves: A (the origin, with a client in it) keeps it on B.
    drop(on_b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = connect_to(b.url(), "again", "temp-ws", &token).await;
    assert!(again.is_ok(), "B keeps A's temporary workspace");
    drop(again);
    // A's last client leaves: A unloads it and B, with nobody in it, drops it too.
    drop(on_a);
    let deadline = tokio::time::Instant::now() + T;
    let mut gone = false;
    while !gone && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        gone = root_a
            .manager_call("get_workspace_info", vec!["temp-ws".into()])
            .await
            .is_err()
            && connect_to(b.url(), "probe", "temp-ws", &token)
                .await
                .is_err();
    }
    assert!(gone, "unloaded on both nodes");
    drop(root_a);
    a.shutdown().await;
    b.shutdown().await;
}

/// The per-workspace client quota counts the clients of every node: with a limit of two,
/// a workspace with one client on each node refuses a third on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workspace_client_quota_holds_across_nodes() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("quota");
    let limit = ["--max-clients-per-workspace", "2"];
    let a = node_args("a", &p, REDIS, &limit).await;
    let b = node_args("b", &p, REDIS, &limit).await;
    assert!(eventually(T, || connected(&a) && connected(&b)).await);
    let owner = connect_as(a.url(), "owner").await;
    let ws = owner.workspace().to_owned();
    let second = join(b.url(), &owner, "second").await.unwrap();
    assert!(eventually(T, || knows(&a, &ws, "second") && knows(&b, &ws, "owner")).await);
    for url in [a.url(), b.url()] {
        let err = join(url, &owner, "third")
            .await
            .err()
            .expect("a third client is refused");
        assert!(
            err.to_string().contains("Too many clients in workspace"),
            "{err}"
        );
    }
    drop(second);
    assert!(eventually(T, || !knows(&a, &ws, "second")).await);
    let third = join(b.url(), &owner, "third").await;
    assert!(
        third.is_ok(),
        "room again once a client left: {:?}",
        third.err()
    );
    drop((owner, third));
    a.shutdown().await;
    b.shutdown().await;
}

/// The singleton rule holds across nodes: a singleton service registered on one node
/// keeps another client on another node from registering the same name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_singleton_on_one_node_binds_the_name_on_another() {
    let _serial = SERIAL.lock().await;
    ensure_redis().await;
    let p = prefix("singleton");
    let (a, b) = (node("a", &p).await, node("b", &p).await);
    let owner = connect_as(a.url(), "owner").await;
    let ws = owner.workspace().to_owned();
    let echo = handler(|call| async move { Ok(call.args.first().cloned().unwrap_or(Value::Nil)) });
    owner
        .register_service(
            "solo",
            map([("singleton", true.into())]),
            vec![("echo", echo.clone())],
        )
        .await
        .unwrap();
    let other = join(b.url(), &owner, "other").await.unwrap();
    let mut refused = None;
    for _ in 0..50 {
        match other
            .register_service(
                "solo",
                map([("visibility", "protected".into())]),
                vec![("echo", echo.clone())],
            )
            .await
        {
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
            // The record had not reached B yet: undo and try again.
            Ok(_) => {
                let _ = other
                    .manager_call(
                        "unregister_service",
                        vec![format!("{ws}/other:solo").into()],
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let refused = refused.expect("B refuses the name of A's singleton");
    assert!(
        refused.contains("A singleton service with the same name (solo)"),
        "{refused}"
    );
    drop((owner, other));
    a.shutdown().await;
    b.shutdown().await;
}
