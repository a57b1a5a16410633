//! `start(config)` of the conda-jupyter-kernel worker (apps-workers.md §4.3): the steps
//! from a WorkerConfig to a kernel that has run the app's script — see the module docs of
//! [`super`] for the order, the timeouts and what goes to the logs. A `stop` during the
//! start makes it give up at the next step (an environment build is interrupted at
//! once) and clean up.

use super::kernel::{self, Kernel, Launch};
use super::session::error_text;
use super::session::Session;
use super::{spec, Conda, APP_TYPE, KERNEL_START_TIMEOUT, SCRIPT_TIMEOUT};
use crate::args::Args;
use crate::config::{progress, WorkerConfig};
use crate::error::{WorkerError, WorkerResult};
use crate::session::{SessionInfo, SessionStatus};
use rhizo_protocol::message::Call;
use rmpv::Value;
use serde_json::{json, Value as Json};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

impl Conda {
    /// `start(config)` → the session id. See the module docs.
    pub(crate) async fn start(self: Arc<Self>, call: Call) -> Result<Value, String> {
        let args = Args::new("start", &call);
        let mut config = args.start_config()?;
        let spec = spec::env_spec(&config.manifest)?;
        let entry = config
            .entry_point
            .get_or_insert_with(|| "main.py".into())
            .clone();
        let name = crate::terminal::session_dir_name(&config.id);
        let session = Arc::new(Session {
            info: Mutex::new(SessionInfo::new(&config, APP_TYPE)),
            logs: Mutex::default(),
            dir: self.base.join(&name),
            private: self.base.join(".kernels").join(&name),
            kernel: Mutex::default(),
            lease: Mutex::default(),
            cancel: watch::channel(false).0,
        });
        {
            let mut sessions = self.sessions();
            if sessions.contains_key(&config.id) {
                return Err(WorkerError::SessionExists(config.id.clone()).into());
            }
            sessions.insert(config.id.clone(), session.clone());
        }
        let cb = config.progress.as_ref();
        let launched = self.launch(&session, &config, &spec, &entry).await;
        let current = self
            .sessions()
            .get(&config.id)
            .is_some_and(|s| Arc::ptr_eq(s, &session));
        if !current {
            session.teardown().await;
            return Err(format!(
                "Session {} was stopped while it started",
                config.id
            ));
        }
        if let Err(e) = launched {
            let e = e.to_string();
            session.fail(&e);
            session.teardown().await;
            progress(cb, &self.client, "error", &e).await;
            return Err(e);
        }
        session.set_status(SessionStatus::Running);
        if let Some(k) = session.kernel() {
            let watched = Arc::downgrade(&session);
            tokio::spawn(async move {
                k.died().await;
                let why = k.dead().unwrap_or_default();
                if let Some(s) = watched.upgrade() {
                    if s.status() == SessionStatus::Running {
                        s.fail(&format!("Kernel died: {why}"));
                    }
                }
            });
        }
        progress(
            cb,
            &self.client,
            "success",
            "Kernel ready and script executed",
        )
        .await;
        Ok(config.id.as_str().into())
    }

    /// The start's steps after the session is registered.
    async fn launch(
        &self,
        session: &Arc<Session>,
        config: &WorkerConfig,
        spec: &spec::EnvSpec,
        entry: &str,
    ) -> WorkerResult<()> {
        let cb = config.progress.as_ref();
        let note = |msg: String| {
            session.log("info", msg.clone());
            async move { progress(cb, &self.client, "info", &msg).await }
        };
        note(format!("Fetching {entry}…")).await;
        let base_url = config.files_base(&self.server_url);
        let token = config.token.as_deref();
        let body = self.files.get(&base_url, entry, token).await?;
        let script = String::from_utf8(body)
            .map_err(|_| WorkerError::Invalid(format!("the entry point {entry} is not UTF-8")))?;
        let script = crate::python_eval::dedent(&unwrap_source(&script));

        note("Preparing the Python environment…".into()).await;
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let mut cancel = session.cancel.subscribe();
        let ensure = self.cache.ensure(spec, &tx, &mut cancel);
        tokio::pin!(ensure);
        let lease = loop {
            tokio::select! {
                r = &mut ensure => break r,
                Some(line) = rx.recv() => {
                    session.log("progress", line.clone());
                    progress(cb, &self.client, "info", &line).await;
                }
            }
        };
        while let Ok(line) = rx.try_recv() {
            session.log("progress", line.clone());
            progress(cb, &self.client, "info", &line).await;
        }
        let lease = lease?;
        let (python, env_dir) = (lease.python.clone(), lease.dir.clone());
        *session.lease.lock().expect("lease lock") = Some(lease);

        for d in [&session.dir, &session.private] {
            tokio::fs::create_dir_all(d)
                .await
                .map_err(|e| WorkerError::Io(format!("creating {}: {e}", d.display())))?;
        }
        let staged = crate::terminal::stage_files(
            &self.files,
            &config.manifest,
            &base_url,
            token,
            &session.dir,
        )
        .await?;
        if !staged.is_empty() {
            note(format!("Staged {} file(s)", staged.len())).await;
        }
        if *session.cancel.borrow() {
            return Err(WorkerError::Invalid("the session was stopped".into()));
        }

        note("Starting the Jupyter kernel…".into()).await;
        let (err_tx, mut err_rx) = mpsc::unbounded_channel::<String>();
        let logs = Arc::downgrade(session);
        tokio::spawn(async move {
            while let Some(line) = err_rx.recv().await {
                match logs.upgrade() {
                    Some(s) => s.log("stderr", line),
                    None => break,
                }
            }
        });
        let launch = Launch {
            python,
            bridge: session.private.join("kernel_bridge.py"),
            cwd: session.dir.clone(),
            env: kernel_env(&env_dir, &session.private),
            startup_timeout: config.timeout.unwrap_or(KERNEL_START_TIMEOUT),
        };
        let kernel = Kernel::start(launch, err_tx).await?;
        *session.kernel.lock().expect("kernel lock") = Some(kernel.clone());
        if *session.cancel.borrow() {
            return Err(WorkerError::Invalid("the session was stopped".into()));
        }

        let init = init_cell(config, &self.server_url, &session.dir);
        let done = kernel
            .execute(&init, KERNEL_START_TIMEOUT, |_| {})
            .await
            .map_err(|e| WorkerError::Io(format!("Initialization failed: {e}")))?;
        if done.reply["status"] != "ok" {
            let r = kernel::result(&done.reply, vec![]);
            return Err(WorkerError::Io(format!(
                "Initialization failed: {}",
                error_text(&r["error"])
            )));
        }

        note(format!("Running {entry}…")).await;
        let timeout = config.timeout.unwrap_or(SCRIPT_TIMEOUT);
        let done = kernel
            .execute(&script, timeout, |_| {})
            .await
            .map_err(|e| WorkerError::Io(format!("Initialization script failed: {e}")))?;
        session.log_outputs(&done.outputs);
        if done.reply["status"] != "ok" {
            let r = kernel::result(&done.reply, vec![]);
            let e = &r["error"];
            return Err(WorkerError::Io(format!(
                "Initialization script failed: {}: {}",
                e["ename"].as_str().unwrap_or("Error"),
                e["evalue"].as_str().unwrap_or_default()
            )));
        }
        Ok(())
    }
}

/// The kernel's process environment (see the module docs).
fn kernel_env(env_dir: &Path, private: &Path) -> Vec<(String, String)> {
    let keep = [
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LC_ALL",
        "SHELL",
        "TZ",
        "TMPDIR",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ];
    let mut env: Vec<(String, String)> = keep
        .iter()
        .filter_map(|k| Some((k.to_string(), std::env::var(k).ok()?)))
        .collect();
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    env.push((
        "PATH".into(),
        format!("{}:{path}", env_dir.join("bin").display()),
    ));
    env.push(("VIRTUAL_ENV".into(), env_dir.to_string_lossy().into_owned()));
    env.push((
        "JUPYTER_RUNTIME_DIR".into(),
        private.join("runtime").to_string_lossy().into_owned(),
    ));
    env
}

/// The cell run before the script: the app's `HYPHA_*` variables and its directory.
fn init_cell(config: &WorkerConfig, server_url: &str, dir: &Path) -> String {
    let vars = json!({
        "HYPHA_SERVER_URL": config.server_url.as_deref().unwrap_or(server_url),
        "HYPHA_WORKSPACE": config.workspace,
        "HYPHA_CLIENT_ID": config.client_id,
        "HYPHA_TOKEN": config.token.as_deref().unwrap_or_default(),
        "HYPHA_APP_ID": config.app_id,
    });
    let dir = Json::String(dir.to_string_lossy().into_owned());
    format!("import os as _os\n_os.environ.update({vars})\n_os.chdir({dir})\ndel _os\n")
}

/// The script inside a stray `<script …>…</script>` or `<file …>…</file>` wrapper, or the
/// source itself.
fn unwrap_source(src: &str) -> String {
    let t = src.trim();
    for tag in ["script", "file"] {
        let open = format!("<{tag}");
        let close = format!("</{tag}>");
        if t.starts_with(&open) && t.ends_with(&close) {
            if let Some(end) = t.find('>') {
                return t[end + 1..t.len() - close.len()].to_owned();
            }
        }
    }
    src.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhizo_protocol::value::from_json;

    #[test]
    fn wrappers_are_stripped() {
        assert_eq!(
            unwrap_source("<script lang=\"python\">\nprint(1)\n</script>\n"),
            "\nprint(1)\n"
        );
        assert_eq!(unwrap_source("<file>x = 1</file>"), "x = 1");
        assert_eq!(unwrap_source("print('<script>')"), "print('<script>')");
    }

    #[test]
    fn the_init_cell_sets_the_variables_and_the_directory() {
        let cfg = WorkerConfig::parse(
            &from_json(&json!({"id": "ws/c", "app_id": "a\"b", "token": "t"})),
            "ws",
        )
        .unwrap();
        let cell = init_cell(&cfg, "http://h:1", Path::new("/tmp/x y"));
        assert!(cell.contains("\"HYPHA_APP_ID\":\"a\\\"b\""), "{cell}");
        assert!(
            cell.contains("\"HYPHA_SERVER_URL\":\"http://h:1\""),
            "{cell}"
        );
        assert!(cell.contains("_os.chdir(\"/tmp/x y\")"), "{cell}");
    }

    #[test]
    fn the_kernel_environment_is_built_not_inherited() {
        let env = kernel_env(Path::new("/e"), Path::new("/p"));
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert!(get("PATH").unwrap().starts_with("/e/bin:"));
        assert_eq!(get("VIRTUAL_ENV"), Some("/e"));
        assert_eq!(get("JUPYTER_RUNTIME_DIR"), Some("/p/runtime"));
        assert!(get("HYPHA_TOKEN").is_none() && get("CARGO_PKG_NAME").is_none());
    }
}
