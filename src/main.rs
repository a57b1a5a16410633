//! The `rhizo` command: `rhizo serve` runs the router and the control plane in one process
//! with embedded defaults (DESIGN.md "Modes"), then its startup functions
//! ([`rhizo::startup`]); `rhizo worker <kind>` runs a built-in server-app worker as a
//! client of any Hypha server ([`rhizo_workers::cli`]); `rhizo token` prints a token signed
//! with the server's secret ([`rhizo::settings::TokenArgs`]). The wiring is
//! [`rhizo::Server`]; this file only parses the command line, starts logging and waits for
//! a signal.

use clap::{Parser, Subcommand};
use rhizo::{Server, Settings, StartError};
use std::process::ExitCode;

/// Exit code for bad configuration (EX_USAGE), returned before any port is bound.
const EXIT_USAGE: u8 = 64;

#[derive(Debug, Parser)]
#[command(name = "rhizo", version, about = "A Hypha server in Rust")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up: the size difference of the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the router and the control plane in one process.
    Serve(Settings),
    /// Run a built-in server-app worker (python-eval, terminal) against a server.
    Worker(rhizo_workers::cli::WorkerArgs),
    /// Print a token for one workspace, signed with the secret `rhizo serve` uses.
    Token(rhizo::settings::TokenArgs),
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

async fn serve(settings: Settings) -> Result<(), StartError> {
    let functions = settings.startup_functions.clone();
    let python = settings.python_eval_python.clone();
    let server = Server::builder(settings).bind().await?;
    println!("rhizo listening on {}", server.url());
    let startup = tokio::select! {
        r = rhizo::startup::run(&server, &functions, &python) => r,
        _ = shutdown_signal() => {
            tracing::info!("shutting down during the startup functions");
            server.shutdown().await;
            return Ok(());
        }
    };
    let startup = match startup {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}; stopping");
            server.shutdown().await;
            return Err(StartError::Io(e.into()));
        }
    };
    shutdown_signal().await;
    tracing::info!("shutting down");
    startup.stop().await;
    server.shutdown().await;
    Ok(())
}

/// `rhizo token`: the token alone on standard output.
fn token(args: rhizo::settings::TokenArgs) -> ExitCode {
    match args.mint() {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            // A bad flag is a usage error; an unreadable secret file is not.
            if e.is::<rhizo::ConfigError>() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Runs `rhizo worker` until a signal or the end of its connection.
fn worker(args: rhizo_workers::cli::WorkerArgs) -> ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(rhizo_workers::cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RHIZO_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = match cli.command {
        Command::Serve(settings) => settings,
        Command::Worker(args) => return worker(args),
        Command::Token(args) => return token(args),
    };
    // Checked before the runtime starts and anything is bound.
    if let Err(e) = settings.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartError::Config(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
