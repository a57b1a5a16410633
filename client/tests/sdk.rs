//! The typed SDK against an in-process rhizo server: a typed service registered by one
//! Rust client and called by another, its schema as callers and the manager see it, and
//! the errors bad calls give.

use rhizo_client::{CallContext, Client, ConnectOptions, RpcError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

/// Two numbers to add.
#[derive(Deserialize, JsonSchema)]
struct AddArgs {
    /// The first number.
    a: i64,
    /// The second number.
    b: i64,
}

#[derive(Deserialize, JsonSchema)]
struct NoArgs {}

#[derive(Deserialize, JsonSchema)]
struct GreetArgs {
    name: String,
    #[serde(default)]
    excited: bool,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Greeting {
    text: String,
    length: usize,
}

async fn server() -> rhizo::Server {
    let settings = rhizo::Settings::parse_from([
        "rhizo",
        "--port",
        "0",
        "--server-id",
        "sdk",
        "--jwt-secret",
        "client-sdk-test-secret",
    ])
    .unwrap();
    rhizo::Server::builder(settings)
        .in_memory()
        .bind()
        .await
        .unwrap()
}

/// A provider with the public `calc` service (`add`, `greet`, `fail`); the full id.
async fn provider(url: &str) -> (Client, String) {
    let c = Client::connect(url, ConnectOptions::default())
        .await
        .unwrap();
    let id = c
        .service("calc")
        .config(json!({"visibility": "public"}))
        .name("Calculator")
        .description("Adds and greets.")
        .docs("A test service of typed functions.")
        .function("add", "Add two numbers.", |args: AddArgs| async move {
            Ok::<_, RpcError>(args.a + args.b)
        })
        .function("greet", "Greet someone.", |args: GreetArgs| async move {
            let mark = if args.excited { "!" } else { "." };
            let text = format!("Hello, {}{mark}", args.name);
            Ok::<_, RpcError>(Greeting {
                length: text.len(),
                text,
            })
        })
        .function("fail", "Always fails.", |_: AddArgs| async move {
            Err::<i64, _>(RpcError::remote("ValueError: no luck"))
        })
        .function_with_context(
            "whoami",
            "The caller.",
            |_: NoArgs, ctx: CallContext| async move {
                Ok::<_, RpcError>(json!({"from": ctx.from, "ws": ctx.ws}))
            },
        )
        .register()
        .await
        .unwrap();
    (c, id)
}

#[tokio::test]
async fn typed_register_and_typed_call_between_two_clients() {
    let s = server().await;
    let (prov, id) = provider(s.url()).await;
    assert_eq!(
        id,
        format!("{}/{}:calc", prov.workspace(), prov.client_id())
    );

    let caller = Client::connect(s.url(), ConnectOptions::default())
        .await
        .unwrap();
    assert_ne!(caller.workspace(), prov.workspace());
    let calc = caller.get_service(&id).await.unwrap();
    assert_eq!(calc.id(), id);
    // Positional, keyword, mixed and one positional map.
    assert_eq!(calc.call::<i64>("add", (2, 3)).await, Ok(5));
    assert_eq!(
        calc.call_kwargs::<i64>("add", json!({"a": 10, "b": -4}))
            .await,
        Ok(6)
    );
    assert_eq!(
        calc.call::<i64>("add", (json!({"a": 1, "b": 1}),)).await,
        Ok(2)
    );
    let hi: Greeting = calc
        .call_kwargs("greet", json!({"name": "Ada", "excited": true}))
        .await
        .unwrap();
    assert_eq!(
        hi,
        Greeting {
            text: "Hello, Ada!".into(),
            length: 11
        }
    );
    // An optional field left out takes its default.
    let hi: Greeting = calc.call("greet", ("Bob",)).await.unwrap();
    assert_eq!(hi.text, "Hello, Bob.");

    // The server-stamped context of the caller.
    let who: serde_json::Value = calc.call("whoami", ()).await.unwrap();
    assert_eq!(
        who,
        json!({
            "from": format!("{}/{}", caller.workspace(), caller.client_id()),
            "ws": caller.workspace(),
        })
    );

    // The schema reaches the caller as the method's `_rschema`.
    let schema = calc.schema("add").expect("add has a schema");
    assert_eq!(schema["name"], "add");
    assert_eq!(schema["description"], "Add two numbers.");
    assert_eq!(schema["parameters"]["type"], "object");
    assert_eq!(
        schema["parameters"]["properties"]["a"]["description"],
        "The first number."
    );
    assert_eq!(schema["parameters"]["required"], json!(["a", "b"]));
    assert_eq!(calc.info()["add"]["_rdoc"], "Add two numbers.");
    assert_eq!(calc.info()["docs"], "A test service of typed functions.");
}

#[tokio::test]
async fn the_schema_is_in_get_service_info_and_list_services() {
    let s = server().await;
    let (prov, id) = provider(s.url()).await;
    let info = rhizo_protocol::value::to_json(
        &prov
            .manager_call("get_service_info", vec![id.as_str().into()])
            .await
            .unwrap(),
    );
    let add = &info["service_schema"]["add"];
    assert_eq!(add["type"], "function");
    assert_eq!(add["function"]["name"], "add");
    assert_eq!(
        add["function"]["parameters"]["properties"]["b"]["type"],
        "integer"
    );
    let greet = &info["service_schema"]["greet"]["function"]["parameters"];
    assert_eq!(greet["required"], json!(["name"]));
    assert_eq!(info["name"], "Calculator");
    assert_eq!(info["description"], "Adds and greets.");

    let listed = prov.list_services(json!({})).await.unwrap();
    let mine = listed
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in {listed:?}"));
    assert_eq!(mine["name"], "Calculator");
}

#[tokio::test]
async fn bad_calls_give_clear_errors() {
    let s = server().await;
    let (_prov, id) = provider(s.url()).await;
    let caller = Client::connect(s.url(), ConnectOptions::default())
        .await
        .unwrap();
    let calc = caller.get_service(&id).await.unwrap();

    let wrong_type = calc.call::<i64>("add", ("x", 2)).await;
    assert!(
        matches!(&wrong_type, Err(RpcError::Remote(m))
            if m.starts_with("TypeError: add() invalid arguments: invalid type: string \"x\"")),
        "{wrong_type:?}"
    );
    let missing = calc.call_kwargs::<i64>("add", json!({"a": 1})).await;
    assert!(
        matches!(&missing, Err(RpcError::Remote(m)) if m.contains("missing field `b`")),
        "{missing:?}"
    );
    let too_many = calc.call::<i64>("add", (1, 2, 3)).await;
    assert_eq!(
        too_many,
        Err(RpcError::Remote(
            "TypeError: add() takes 2 positional arguments but 3 were given".into()
        ))
    );
    // The handler's own error text reaches the caller unchanged.
    assert_eq!(
        calc.call::<i64>("fail", (1, 2)).await,
        Err(RpcError::Remote("ValueError: no luck".into()))
    );
    assert_eq!(
        calc.call::<i64>("nope", ()).await,
        Err(RpcError::NoSuchFunction("nope".into()))
    );
    // A reply that is not the type asked for.
    let as_text = calc.call::<String>("add", (1, 2)).await;
    assert!(matches!(&as_text, Err(RpcError::Decode(_))), "{as_text:?}");
    let not_a_map = calc.call_kwargs::<i64>("add", (1, 2)).await;
    assert!(
        matches!(&not_a_map, Err(RpcError::Encode(_))),
        "{not_a_map:?}"
    );
    // A service that does not exist.
    let gone = caller.get_service("nobody:nothing").await;
    assert!(
        matches!(&gone, Err(RpcError::Remote(_))),
        "{:?}",
        gone.err()
    );
}

#[tokio::test]
async fn calls_fail_as_disconnected_or_timed_out() {
    let s = server().await;
    let c = Client::connect(s.url(), ConnectOptions::default())
        .await
        .unwrap();
    let slow = c
        .service("slow")
        .function("wait", "Sleeps.", |_: AddArgs| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, RpcError>(0)
        })
        .register()
        .await
        .unwrap();
    let caller = Client::connect(s.url(), ConnectOptions::default())
        .await
        .unwrap();
    // Protected: another workspace may not see it.
    assert!(matches!(
        caller.get_service(&slow).await.err(),
        Some(RpcError::Remote(_))
    ));
    drop(caller);

    let token = c
        .generate_token(json!({"workspace": c.workspace()}))
        .await
        .unwrap();
    assert!(!token.is_empty());
    let same_ws = Client::connect(
        s.url(),
        ConnectOptions {
            token: Some(token),
            workspace: Some(c.workspace().to_owned()),
            ..ConnectOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(same_ws.workspace(), c.workspace());
    let svc = same_ws
        .get_service(&slow)
        .await
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    // The callee's heartbeats (every 150 ms, half the timeout) keep the call alive past
    // its 300 ms timeout while it works; once the callee is gone they stop and the call times out
    // (or the server rejects it first).
    let started = std::time::Instant::now();
    let call = svc.call::<i64>("wait", (1, 2));
    let cut = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        drop(c);
    };
    let (r, ()) = tokio::join!(call, cut);
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert!(
        matches!(&r, Err(RpcError::Remote(_)) | Err(RpcError::Timeout(_))),
        "{r:?}"
    );
    same_ws.disconnect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = svc.call::<i64>("wait", (1, 2)).await;
    assert_eq!(after.err(), Some(RpcError::Disconnected));
}

#[derive(Deserialize, JsonSchema)]
struct CountArgs {
    /// How many numbers to stream.
    n: u64,
}

/// A provider with the public `counter` service: `count(n)` streams 0..n, `flaky(n)`
/// streams 0..n and then fails; the full id.
async fn counter(url: &str) -> (Client, String) {
    let c = Client::connect(url, ConnectOptions::default())
        .await
        .unwrap();
    let id = c
        .service("counter")
        .config(json!({"visibility": "public"}))
        .generator("count", "Count up to n.", |args: CountArgs| {
            futures_util::stream::iter(0..args.n)
        })
        .try_generator("flaky", "Count up to n, then fail.", |args: CountArgs| {
            let items = (0..args.n)
                .map(Ok)
                .chain([Err(RpcError::remote("ValueError: flaked"))]);
            futures_util::stream::iter(items)
        })
        .register()
        .await
        .unwrap();
    (c, id)
}

/// Waits until `prov` serves `n` generator methods (two per live generator).
async fn exposed(prov: &Client, n: usize) {
    for _ in 0..100 {
        if prov.generators_exposed() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(prov.generators_exposed(), n);
}

#[tokio::test]
async fn a_typed_generator_streams_to_a_rust_caller() {
    use futures_util::StreamExt;
    let s = server().await;
    let (prov, id) = counter(s.url()).await;
    let caller = Client::connect(s.url(), ConnectOptions::default())
        .await
        .unwrap();
    let svc = caller.get_service(&id).await.unwrap();
    let schema = svc.schema("count").expect("count has a schema");
    assert_eq!(schema["description"], "Count up to n.");
    assert_eq!(schema["parameters"]["properties"]["n"]["type"], "integer");

    // All items, in order; then the generator is withdrawn.
    let all: Vec<Result<u64, RpcError>> = svc
        .call_stream("count", (5,))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(all, (0..5).map(Ok).collect::<Vec<_>>());
    let kw: Vec<Result<u64, RpcError>> = svc
        .call_stream_kwargs("count", json!({"n": 2}))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(kw, vec![Ok(0), Ok(1)]);
    exposed(&prov, 0).await;

    // Dropped early: the caller closes it and the provider drops it.
    let mut many = svc.call_stream::<u64>("count", (1_000_000,)).await.unwrap();
    assert_eq!(many.next().await, Some(Ok(0)));
    assert_eq!(many.next().await, Some(Ok(1)));
    exposed(&prov, 2).await;
    drop(many);
    exposed(&prov, 0).await;

    // An error item ends the stream with the callee's text.
    let flaky: Vec<Result<u64, RpcError>> = svc
        .call_stream("flaky", (2,))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(
        flaky,
        vec![Ok(0), Ok(1), Err(RpcError::remote("ValueError: flaked"))]
    );
    exposed(&prov, 0).await;

    // Bad arguments fail the call itself.
    let err = svc.call_stream::<u64>("count", ("x",)).await.err().unwrap();
    assert!(
        err.to_string().contains("count() invalid arguments"),
        "{err}"
    );
}
