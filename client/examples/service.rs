//! Registers a public service `calc` with one typed function and serves it until Ctrl-C;
//! prints the full service id. `cargo run -p rhizo-client --example service -- http://127.0.0.1:9527`

use rhizo_client::{Client, ConnectOptions, RpcError};

/// Two numbers to add.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct AddArgs {
    /// The first number.
    a: i64,
    /// The second number.
    b: i64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or("http://127.0.0.1:9527".into());
    let client = Client::connect(&url, ConnectOptions::default()).await?;
    let id = client
        .service("calc")
        .config(serde_json::json!({"visibility": "public"}))
        .description("A calculator written in Rust.")
        .function("add", "Add two numbers.", |args: AddArgs| async move {
            Ok::<_, RpcError>(args.a + args.b)
        })
        .register()
        .await?;
    println!("{id}");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
