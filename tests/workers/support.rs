//! What the worker tests share: an in-process server with a root token, app workspaces
//! and apps in the artifact manager, the WorkerConfig the controller would build, calls
//! into a worker's service, and a client-side inbox for the callbacks a worker makes.

#![allow(dead_code)]

use rhizo_client::{handler, Client, ClientError, ConnectOptions};
use rhizo_protocol::value::{from_json, to_json};
use rhizo_workers::RunningWorker;
use rmpv::Value;
use serde_json::{json, Value as Json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ROOT_TOKEN: &str = "rz-workers-Qk9yV29ya2VyU3VpdGVPbmx5-77bb";
pub const T: Duration = Duration::from_secs(30);

pub async fn server() -> rhizo::Server {
    let settings = rhizo::Settings::parse_from([
        "rhizo",
        "--port",
        "0",
        "--server-id",
        "workers",
        "--jwt-secret",
        "workers-integration-secret",
        "--root-token",
        ROOT_TOKEN,
    ])
    .unwrap();
    rhizo::Server::builder(settings)
        .in_memory()
        .control_config(|c| c.public_base_url = c.local_base_url.clone())
        .bind()
        .await
        .unwrap()
}

pub async fn connect(url: &str, token: Option<&str>, ws: Option<&str>) -> Client {
    let opts = ConnectOptions {
        token: token.map(str::to_owned),
        workspace: ws.map(str::to_owned),
        ..Default::default()
    };
    Client::connect(url, opts).await.unwrap()
}

/// A persistent workspace `name` (artifacts need one) and a root client inside it: the
/// "controller" of these tests.
pub async fn app_workspace(url: &str, name: &str) -> Client {
    let root = connect(url, Some(ROOT_TOKEN), None).await;
    let config = from_json(&json!({"id": name, "persistent": true, "description": "apps"}));
    root.manager_call("create_workspace", vec![config])
        .await
        .unwrap();
    connect(url, Some(ROOT_TOKEN), Some(name)).await
}

/// A worker's service, called as a peer calls it.
pub struct Worker {
    pub addr: String,
    pub svc: String,
}

impl Worker {
    pub fn of(w: &RunningWorker) -> Self {
        let (addr, svc) = w.service_id().split_once(':').unwrap();
        Worker {
            addr: addr.into(),
            svc: svc.into(),
        }
    }

    pub async fn call(&self, c: &Client, m: &str, args: Json) -> Result<Json, ClientError> {
        self.call_kw(c, m, args, None).await
    }

    pub async fn call_kw(
        &self,
        c: &Client,
        m: &str,
        args: Json,
        kwargs: Option<Json>,
    ) -> Result<Json, ClientError> {
        let args = match from_json(&args) {
            Value::Array(a) => a,
            other => vec![other],
        };
        c.call_with(
            &self.addr,
            &format!("services.{}.{m}", self.svc),
            args,
            kwargs.as_ref().map(from_json),
            T,
        )
        .await
        .map(|v| to_json(&v))
    }
}

pub fn refused(r: Result<Json, ClientError>, text: &str) {
    match r {
        Err(ClientError::Remote(e)) => assert!(e.contains(text), "{e:?} lacks {text:?}"),
        other => panic!("expected an error with {text:?}, got {other:?}"),
    }
}

/// Calls a method of `public/artifact-manager` with keyword arguments.
pub async fn am(c: &Client, method: &str, kwargs: Json) -> Json {
    let r = c
        .call_with(
            &c.manager(),
            &format!("services.artifact-manager.{method}"),
            vec![],
            Some(from_json(&kwargs)),
            T,
        )
        .await
        .unwrap_or_else(|e| panic!("artifact-manager.{method}: {e}"));
    to_json(&r)
}

/// Creates app `alias` of type `application` with `files` and commits it.
pub async fn install_app(c: &Client, alias: &str, manifest: Json, files: &[(&str, &str)]) {
    let art = am(
        c,
        "create",
        json!({"type": "application", "alias": alias, "manifest": manifest, "version": "stage"}),
    )
    .await;
    let id = art["id"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    for (path, body) in files {
        let url = am(c, "put_file", json!({"artifact_id": id, "file_path": path})).await;
        let url = url.as_str().or(url["url"].as_str()).unwrap().to_owned();
        let r = http.put(&url).body(body.to_string()).send().await.unwrap();
        assert!(r.status().is_success(), "upload of {path}: {}", r.status());
    }
    am(c, "commit", json!({"artifact_id": id})).await;
}

/// The WorkerConfig the controller would send for session `cid` of app `alias`.
pub async fn worker_config(
    owner: &Client,
    url: &str,
    alias: &str,
    cid: &str,
    extra: Json,
) -> (Json, String) {
    let ws = owner.workspace().to_owned();
    let token = owner
        .manager_call(
            "generate_token",
            vec![from_json(
                &json!({"client_id": cid, "permission": "read_write"}),
            )],
        )
        .await
        .unwrap();
    let token = token.as_str().unwrap().to_owned();
    let mut config = json!({
        "id": format!("{ws}/{cid}"),
        "app_id": alias,
        "workspace": ws,
        "client_id": cid,
        "server_url": url,
        "token": token,
        "artifact_id": format!("{ws}/{alias}"),
        "app_files_base_url": format!("{url}/{ws}/artifacts/{alias}/files"),
        "timeout": 20,
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    (config, token)
}

pub fn items(logs: &Json, kind: &str) -> Vec<String> {
    logs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == kind)
        .map(|i| i["content"].as_str().unwrap().to_owned())
        .collect()
}

/// Collects what the worker sends to the callbacks this client serves
/// (`services.cb.<name>`), and hands out encoded methods pointing at them.
#[derive(Clone, Default)]
pub struct Inbox(Arc<Mutex<Vec<(String, Json)>>>);

impl Inbox {
    pub async fn serve(c: &Client) -> Inbox {
        let inbox = Inbox::default();
        let mut functions = Vec::new();
        for name in ["progress", "output", "screen"] {
            let i = inbox.clone();
            let h = handler(move |call: rhizo_protocol::message::Call| {
                let i = i.clone();
                async move {
                    let arg = call.args.first().map(to_json).unwrap_or(Json::Null);
                    i.0.lock().unwrap().push((name.to_owned(), arg));
                    Ok(Value::Nil)
                }
            });
            functions.push((name, h));
        }
        let config = from_json(&json!({"visibility": "public"}));
        c.register_service("cb", config, functions).await.unwrap();
        inbox
    }

    pub fn method(c: &Client, name: &str) -> Json {
        json!({
            "_rtype": "method",
            "_rtarget": format!("{}/{}", c.workspace(), c.client_id()),
            "_rmethod": format!("services.cb.{name}"),
            "_rpromise": "*",
        })
    }

    pub fn of(&self, name: &str) -> Vec<Json> {
        let got = self.0.lock().unwrap();
        got.iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

pub fn python() -> std::path::PathBuf {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

pub fn has_hypha_rpc(python: &std::path::Path) -> bool {
    std::process::Command::new(python)
        .args(["-c", "import hypha_rpc"])
        .status()
        .is_ok_and(|s| s.success())
}

/// The pid in `pid=<n>` of a command's output.
pub fn pid_in(text: &str) -> u32 {
    let at = text
        .find("pid=")
        .unwrap_or_else(|| panic!("no pid in {text:?}"))
        + 4;
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

pub fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

pub fn stdout_of(result: &Json) -> String {
    assert_eq!(result["status"], "ok", "{result}");
    assert_eq!(result["outputs"][0]["name"], "stdout", "{result}");
    assert_eq!(result["outputs"][1]["name"], "screen_diff", "{result}");
    result["outputs"][0]["text"].as_str().unwrap().to_owned()
}
