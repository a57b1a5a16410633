//! Service registration, discovery and calls between two Rust clients through the server.

mod common;

use rhizo_client::{handler, Client, ClientError, ConnectOptions, Event};
use rhizo_protocol::value::{get, get_str, map};
use rmpv::Value;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn register_get_and_call_across_workspaces() {
    let s = common::start().await;
    let provider = common::connect_as(&s.url, "prov").await;
    let add = handler(|call| async move {
        let a = call.args.first().and_then(Value::as_i64).unwrap_or(0);
        let b = call.args.get(1).and_then(Value::as_i64).unwrap_or(0);
        Ok(Value::from(a + b))
    });
    let sid = provider
        .register_service(
            "calc",
            map([("visibility", "public".into())]),
            vec![("add", add.clone())],
        )
        .await
        .unwrap();
    assert_eq!(sid, format!("{}/prov:calc", provider.workspace()));
    provider
        .register_service("secret", Value::Nil, vec![("add", add)])
        .await
        .unwrap();

    let consumer = Client::connect(&s.url, ConnectOptions::default())
        .await
        .unwrap();
    assert_ne!(consumer.workspace(), provider.workspace());
    let svc = consumer
        .manager_call("get_service", vec![sid.as_str().into()])
        .await
        .unwrap();
    let add_m = get(&svc, "add").expect("encoded method");
    let target = get_str(add_m, "_rtarget").unwrap();
    let method = get_str(add_m, "_rmethod").unwrap();
    assert_eq!(target, format!("{}/prov", provider.workspace()));
    assert_eq!(
        get_str(get(&svc, "config").unwrap(), "workspace"),
        Some(provider.workspace())
    );
    let sum = consumer
        .call(target, method, vec![2.into(), 3.into()], T)
        .await
        .unwrap();
    assert_eq!(sum.as_i64(), Some(5));

    // Protected services of another workspace are refused by the manager.
    let err = consumer
        .manager_call(
            "get_service",
            vec![format!("{}/prov:secret", provider.workspace()).into()],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Remote(m) if m.contains("Permission denied")),
        "{err}"
    );
    // ...and by the provider when called directly.
    let err = consumer
        .call(target, "services.secret.add", vec![1.into(), 1.into()], T)
        .await
        .unwrap_err();
    assert!(matches!(&err, ClientError::Remote(_)), "{err}");
}

#[tokio::test]
async fn keyword_arguments_bind_by_name() {
    let s = common::start().await;
    let c = Client::connect(&s.url, ConnectOptions::default())
        .await
        .unwrap();
    let listed = c
        .call_with(
            &c.manager(),
            "services.default.list_services",
            vec![],
            Some(map([
                ("query", Value::Nil),
                ("include_unlisted", true.into()),
            ])),
            T,
        )
        .await
        .unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| get_str(r, "id"))
        .collect();
    assert!(ids.iter().any(|i| i.ends_with(":built-in")), "{ids:?}");
    let err = c
        .call_with(
            &c.manager(),
            "services.default.echo",
            vec![],
            Some(map([("nope", 1.into())])),
            T,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Remote(m) if m.contains("unexpected keyword")),
        "{err}"
    );
}

#[tokio::test]
async fn token_member_joins_and_disconnect_is_announced() {
    let s = common::start().await;
    let mut owner = common::connect_as(&s.url, "owner").await;
    owner
        .manager_call(
            "subscribe",
            vec![Value::Array(vec![
                "client_disconnected".into(),
                "service_added".into(),
            ])],
        )
        .await
        .unwrap();
    let token = owner
        .manager_call(
            "generate_token",
            vec![map([("permission", "read_write".into())])],
        )
        .await
        .unwrap();
    let member = Client::connect(
        &s.url,
        ConnectOptions {
            client_id: Some("member".into()),
            workspace: Some(owner.workspace().into()),
            token: token.as_str().map(str::to_owned),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(member.workspace(), owner.workspace());
    member
        .register_service("svc", Value::Nil, vec![])
        .await
        .unwrap();
    drop(member);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(T, owner.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Frame(m) => seen.push((
                get_str(&m.merged, "type").unwrap_or_default().to_owned(),
                get_str(get(&m.merged, "data").unwrap(), "id")
                    .unwrap_or_default()
                    .to_owned(),
            )),
            _ => continue,
        }
    }
    assert_eq!(seen[0].0, "service_added");
    assert!(seen[0].1.ends_with("member:svc"));
    assert_eq!(
        seen[1],
        ("client_disconnected".to_owned(), "member".to_owned())
    );
    let ws = owner.workspace().to_owned();
    assert!(common::eventually(T, || s.manager.registry.clients(&ws).len() == 1).await);
}

#[tokio::test]
async fn services_cannot_be_registered_for_other_clients_or_workspaces() {
    let s = common::start().await;
    let a = common::connect_as(&s.url, "a").await;
    let other = Client::connect(&s.url, ConnectOptions::default())
        .await
        .unwrap();
    for id in [
        format!("{}/someone-else:svc", a.workspace()),
        format!("{}/a:svc", other.workspace()),
    ] {
        let record = map([
            ("id", id.as_str().into()),
            ("config", map([("visibility", "public".into())])),
        ]);
        let err = a
            .manager_call("register_service", vec![record])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::Remote(m) if m.starts_with("PermissionError")),
            "{id}: {err}"
        );
    }
    assert!(s
        .manager
        .registry
        .find(&rhizo_control_plane::registry::Pattern {
            name: Some("svc"),
            ..Default::default()
        })
        .is_empty());
    // Nor unregistered by another client.
    a.register_service("mine", map([("visibility", "public".into())]), vec![])
        .await
        .unwrap();
    let err = other
        .manager_call(
            "unregister_service",
            vec![format!("{}/a:mine", a.workspace()).into()],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Remote(m) if m.contains("Permission denied")),
        "{err}"
    );
}
