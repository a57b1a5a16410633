//! The front-end packages the server serves itself, never from a CDN (many clusters have no
//! internet access): the hypha-rpc JavaScript client at `/assets/hypha-rpc-websocket.mjs`
//! (and `.js`, `.min.js`, `.min.mjs`, with source maps), as the reference serves it, and
//! Pyodide's core at `/assets/pyodide/` for web-python apps (apps-workers.md §2.3).
//!
//! They come from the npm registry at set-up (`assets/package.json`, pinned by its lock
//! file; `bash assets/setup.sh` installs them into the assets directory, by default
//! `$HOME/.cache/rhizo-assets`). When they are missing, those URLs answer 404 with a
//! message saying how to install them.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use std::path::{Path, PathBuf};
use tower_http::services::{ServeDir, ServeFile};

/// The hypha-rpc client files served at `/assets/<name>`.
const CLIENT_FILES: [&str; 8] = [
    "hypha-rpc-websocket.mjs",
    "hypha-rpc-websocket.mjs.map",
    "hypha-rpc-websocket.js",
    "hypha-rpc-websocket.js.map",
    "hypha-rpc-websocket.min.js",
    "hypha-rpc-websocket.min.js.map",
    "hypha-rpc-websocket.min.mjs",
    "hypha-rpc-websocket.min.mjs.map",
];

/// The assets directory when none is configured: `$HOME/.cache/rhizo-assets`.
pub fn default_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/rhizo-assets")
}

/// Whether `dir` holds the installed packages (the hypha-rpc client and Pyodide).
pub fn installed(dir: &Path) -> bool {
    client_dir(dir).join(CLIENT_FILES[0]).is_file()
        && pyodide_dir(dir).join("pyodide.mjs").is_file()
}

fn client_dir(dir: &Path) -> PathBuf {
    dir.join("node_modules/hypha-rpc/dist")
}

fn pyodide_dir(dir: &Path) -> PathBuf {
    dir.join("node_modules/pyodide")
}

/// The `/assets/…` routes over `dir` (see the module doc).
pub fn routes<S: Clone + Send + Sync + 'static>(dir: &Path) -> axum::Router<S> {
    let mut r = axum::Router::new();
    if !installed(dir) {
        tracing::info!(
            dir = %dir.display(),
            "front-end assets not installed (bash assets/setup.sh): /assets/hypha-rpc-websocket.mjs \
             and /assets/pyodide/ answer 404, browser apps cannot connect"
        );
        let msg = format!(
            "not installed: the server's front-end assets are missing from {}; run `bash \
             assets/setup.sh` (or set --assets-dir / RHIZO_ASSETS_DIR)",
            dir.display()
        );
        let missing = move || {
            let msg = msg.clone();
            async move { (StatusCode::NOT_FOUND, msg).into_response() }
        };
        for f in CLIENT_FILES {
            r = r.route(&format!("/assets/{f}"), get(missing.clone()));
        }
        return r.route("/assets/pyodide/{*path}", get(missing));
    }
    for f in CLIENT_FILES {
        r = r.route_service(
            &format!("/assets/{f}"),
            ServeFile::new(client_dir(dir).join(f)),
        );
    }
    r.nest_service("/assets/pyodide", ServeDir::new(pyodide_dir(dir)))
}
