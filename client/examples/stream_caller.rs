//! Iterates the remote generator `count(n=3)` of a service (e.g. a Python `async def
//! count(n): ... yield i`) and prints its items.
//! `cargo run -p rhizo-client --example stream_caller -- http://127.0.0.1:9527 <ws>/<client>:counter`

use futures_util::StreamExt;
use rhizo_client::{Client, ConnectOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or("http://127.0.0.1:9527".into());
    let id = args
        .next()
        .ok_or("usage: stream_caller <server url> <service id>")?;
    let client = Client::connect(&url, ConnectOptions::default()).await?;
    let counter = client.get_service(&id).await?;
    let mut counts = counter
        .call_stream_kwargs::<i64>("count", serde_json::json!({"n": 3}))
        .await?;
    let mut items = Vec::new();
    while let Some(n) = counts.next().await {
        items.push(n?);
    }
    println!("count(n=3) = {items:?}");
    Ok(())
}
