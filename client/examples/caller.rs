//! Gets a service and calls its `add`, positionally and with keyword arguments.
//! `cargo run -p rhizo-client --example caller -- http://127.0.0.1:9527 <ws>/<client>:calc`

use rhizo_client::{Client, ConnectOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or("http://127.0.0.1:9527".into());
    let id = args
        .next()
        .ok_or("usage: caller <server url> <service id>")?;
    let client = Client::connect(&url, ConnectOptions::default()).await?;
    let calc = client.get_service(&id).await?;
    let sum: i64 = calc.call("add", (2, 3)).await?;
    let same: i64 = calc
        .call_kwargs("add", serde_json::json!({"a": 2, "b": 3}))
        .await?;
    println!("add(2, 3) = {sum}, add(a=2, b=3) = {same}");
    Ok(())
}
