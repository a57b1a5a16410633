//! Registers a public service `counter` whose `count(n)` streams 0..n as a remote
//! generator (Python: `async for i in await svc.count(n=3)`), serves it until Ctrl-C and
//! prints the full service id. `cargo run -p rhizo-client --example stream -- http://127.0.0.1:9527`

use rhizo_client::{Client, ConnectOptions};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct CountArgs {
    /// How many numbers to stream.
    n: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or("http://127.0.0.1:9527".into());
    let client = Client::connect(&url, ConnectOptions::default()).await?;
    let id = client
        .service("counter")
        .config(serde_json::json!({"visibility": "public"}))
        .generator("count", "Count from 0 up to n.", |args: CountArgs| {
            futures_util::stream::iter(0..args.n)
        })
        .register()
        .await?;
    println!("{id}");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
