//! The built-in workers (rhizo-workers; apps-workers.md §3, §4.1–§4.2) end to end: an
//! in-process rhizo server, a worker started with `start_worker` as a client registering
//! in `public`, and a second Rust client in an app workspace that drives the worker the
//! way the server-apps controller does — `start` with a WorkerConfig it builds, then
//! `get_logs`, `execute`, `stop`, … — plus a stranger from another workspace who must be
//! refused. The app's files live in the artifact manager, uploaded through
//! `public/artifact-manager` and fetched by the worker over HTTP with the session's token.

#[path = "workers/support.rs"]
mod support;

use rhizo_protocol::value::to_json;
use rhizo_workers::{start_worker, WorkerKind, WorkerOptions};
use serde_json::json;
use std::time::{Duration, Instant};
use support::*;

const ENV_SCRIPT: &str = r#"
import os
print("hello from the app")
print("ENV", ",".join(sorted(k for k in os.environ if k != "LC_CTYPE")))
print("CID", os.environ["HYPHA_CLIENT_ID"])
print("TOKEN", os.environ["HYPHA_TOKEN"])
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_eval_runs_the_app_script_with_only_its_hypha_environment() {
    let srv = server().await;
    let url = srv.url().to_owned();
    let owner = app_workspace(&url, "ws-pyeval-apps").await;
    let python = python();
    let opts = WorkerOptions {
        server_url: url.clone(),
        token: Some(ROOT_TOKEN.into()),
        workspace: Some("public".into()),
        python: python.clone(),
        ..Default::default()
    };
    let running = start_worker(WorkerKind::PythonEval, opts).await.unwrap();
    assert!(running.service_id().starts_with("public/"));
    assert!(running.service_id().ends_with(":python-eval-worker"));
    let w = Worker::of(&running);

    // The service record as a peer sees it.
    let svc = owner
        .manager_call("get_service", vec![running.service_id().into()])
        .await
        .unwrap();
    let svc = to_json(&svc);
    assert_eq!(svc["type"], "server-app-worker");
    assert_eq!(svc["supported_types"], json!(["python-eval"]));
    assert_eq!(svc["config"]["require_context"], true);
    assert_eq!(svc["use_local_url"], true);

    let connect_script = if has_hypha_rpc(&python) {
        // The token and client id are good for connecting as the app.
        r#"
import os
from hypha_rpc.sync import connect_to_server
s = connect_to_server({"server_url": os.environ["HYPHA_SERVER_URL"],
    "workspace": os.environ["HYPHA_WORKSPACE"], "client_id": os.environ["HYPHA_CLIENT_ID"],
    "token": os.environ["HYPHA_TOKEN"]})
print("CONNECTED", s.config.workspace, s.config.client_id)
s.disconnect()
"#
    } else {
        eprintln!("hypha-rpc is not installed for {python:?}: the app does not connect back");
        "print('CONNECTED skipped')"
    };
    install_app(
        &owner,
        "hello-app",
        json!({"name": "Hello", "type": "python-eval", "entry_point": "main.py"}),
        &[
            ("main.py", ENV_SCRIPT),
            ("slow.py", "import time\ntime.sleep(60)\n"),
            (
                "fail.py",
                "import sys\nsys.stderr.write('bad things\\n')\nsys.exit(3)\n",
            ),
            ("connect.py", connect_script),
        ],
    )
    .await;
    let inbox = Inbox::serve(&owner).await;

    // start runs the script to its end; its output is in the logs.
    let cid = "_rapp_pyeval_one__rlb";
    let (mut config, token) = worker_config(&owner, &url, "hello-app", cid, json!({})).await;
    config["manifest"] = json!({"type": "python-eval", "entry_point": "main.py"});
    config["progress_callback"] = Inbox::method(&owner, "progress");
    let sid = format!("{}/{cid}", owner.workspace());
    let started = w
        .call(&owner, "start", json!([config.clone()]))
        .await
        .unwrap();
    assert_eq!(started, json!(sid));
    assert!(
        !inbox.of("progress").is_empty(),
        "start reports progress to the callback"
    );
    let logs = w.call(&owner, "get_logs", json!([sid])).await.unwrap();
    let stdout = items(&logs, "stdout").join("");
    assert!(stdout.contains("hello from the app"), "{logs}");
    assert!(
        stdout.contains("ENV HYPHA_CLIENT_ID,HYPHA_SERVER_URL,HYPHA_TOKEN,HYPHA_WORKSPACE\n"),
        "the script sees exactly the four HYPHA_* variables: {stdout}"
    );
    assert!(stdout.contains(&format!("CID {cid}\n")), "{stdout}");
    assert!(stdout.contains(&format!("TOKEN {token}\n")), "{stdout}");
    assert_eq!(items(&logs, "info"), ["Process exited with return code: 0"]);
    // Filtering by type (keyword arguments), then slicing.
    let only = w
        .call_kw(
            &owner,
            "get_logs",
            json!([sid]),
            Some(json!({"type": "info", "offset": 0, "limit": 5})),
        )
        .await
        .unwrap();
    assert_eq!(only["total"], 1);
    assert_eq!(only["limit"], 5);
    let sliced = w
        .call(&owner, "get_logs", json!([sid, null, 1]))
        .await
        .unwrap();
    assert_eq!(sliced["total"], logs["total"]);
    assert_eq!(
        sliced["items"].as_array().unwrap().len(),
        logs["items"].as_array().unwrap().len() - 1
    );
    let info = w
        .call(&owner, "get_session_info", json!([sid]))
        .await
        .unwrap();
    assert_eq!(info["status"], "completed");
    assert_eq!(info["app_type"], "python-eval");
    let listed = w.call(&owner, "list_sessions", json!([])).await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    refused(
        w.call(&owner, "start", json!([config])).await,
        "already exists",
    );

    // A stranger from another workspace may neither read nor stop nor start into it.
    let stranger = connect(&url, None, None).await;
    assert_ne!(stranger.workspace(), owner.workspace());
    refused(
        w.call(&stranger, "get_logs", json!([sid])).await,
        "PermissionError",
    );
    refused(
        w.call(&stranger, "stop", json!([sid])).await,
        "PermissionError",
    );
    let (other, _) = worker_config(&owner, &url, "hello-app", "_rapp_x__rlb", json!({})).await;
    refused(
        w.call(&stranger, "start", json!([other])).await,
        "PermissionError",
    );
    let theirs = w.call(&stranger, "list_sessions", json!([])).await.unwrap();
    assert_eq!(theirs, json!([]));
    refused(
        w.call(&stranger, "list_sessions", json!([owner.workspace()]))
            .await,
        "PermissionError",
    );

    // stop forgets the session; unknown ids are no error for stop, but are for the rest.
    w.call(&owner, "stop", json!([sid])).await.unwrap();
    w.call(&owner, "stop", json!([sid])).await.unwrap();
    refused(
        w.call(&owner, "get_logs", json!([sid])).await,
        &format!("Session not found: {sid}"),
    );

    // A script running past its timeout is killed and start fails.
    let cid = "_rapp_pyeval_slow__rlb";
    let extra = json!({"entry_point": "slow.py", "timeout": 1});
    let (config, _) = worker_config(&owner, &url, "hello-app", cid, extra).await;
    let sid = format!("{}/{cid}", owner.workspace());
    let t0 = Instant::now();
    refused(
        w.call(&owner, "start", json!([config])).await,
        "TimeoutError",
    );
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    let logs = w.call(&owner, "get_logs", json!([sid])).await.unwrap();
    assert!(
        items(&logs, "error")[0].contains("did not finish"),
        "{logs}"
    );
    w.call(&owner, "stop", json!([sid])).await.unwrap();

    // A failing script: stderr and its return code are logged; start still succeeds.
    let cid = "_rapp_pyeval_fail__rlb";
    let extra = json!({"entry_point": "fail.py"});
    let (config, _) = worker_config(&owner, &url, "hello-app", cid, extra).await;
    let sid = format!("{}/{cid}", owner.workspace());
    w.call(&owner, "start", json!([config])).await.unwrap();
    let logs = w.call(&owner, "get_logs", json!([sid])).await.unwrap();
    assert_eq!(items(&logs, "stderr"), ["bad things\n"]);
    assert_eq!(items(&logs, "info"), ["Process exited with return code: 3"]);

    // A missing entry point is a clear error naming the URL.
    let extra = json!({"entry_point": "nope.py"});
    let (config, _) = worker_config(&owner, &url, "hello-app", "_rapp_nope__rlb", extra).await;
    refused(w.call(&owner, "start", json!([config])).await, "nope.py");

    // The session's token lets the app connect as its client (when hypha-rpc is there).
    let cid = "_rapp_pyeval_connect__rlb";
    let extra = json!({"entry_point": "connect.py"});
    let (config, _) = worker_config(&owner, &url, "hello-app", cid, extra).await;
    let sid = format!("{}/{cid}", owner.workspace());
    w.call(&owner, "start", json!([config])).await.unwrap();
    let logs = w.call(&owner, "get_logs", json!([sid])).await.unwrap();
    let out = items(&logs, "stdout").join("");
    if !out.contains("skipped") {
        let want = format!("CONNECTED {} {cid}", owner.workspace());
        assert!(out.contains(&want), "{logs}");
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_eval_spawn_failures_are_logged_and_start_succeeds() {
    let srv = server().await;
    let url = srv.url().to_owned();
    let owner = app_workspace(&url, "ws-pyeval-spawn").await;
    // An interpreter that exists but cannot be executed.
    let dir = std::env::temp_dir().join(format!("rhizo-workers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = dir.join("python-not-executable");
    std::fs::write(&fake, "not a program").unwrap();
    let opts = WorkerOptions {
        server_url: url.clone(),
        token: Some(ROOT_TOKEN.into()),
        workspace: Some("public".into()),
        service_id: Some("broken-python".into()),
        python: fake,
        ..Default::default()
    };
    let running = start_worker(WorkerKind::PythonEval, opts).await.unwrap();
    let w = Worker::of(&running);
    install_app(
        &owner,
        "spawn-app",
        json!({"type": "python-eval", "entry_point": "main.py"}),
        &[("main.py", "print(1)")],
    )
    .await;
    let cid = "_rapp_spawn__rlb";
    let extra = json!({"entry_point": "main.py"});
    let (config, _) = worker_config(&owner, &url, "spawn-app", cid, extra).await;
    let sid = format!("{}/{cid}", owner.workspace());
    w.call(&owner, "start", json!([config])).await.unwrap();
    let logs = w.call(&owner, "get_logs", json!([sid])).await.unwrap();
    assert!(
        items(&logs, "error")[0].contains("Failed to start"),
        "{logs}"
    );
    assert_eq!(
        items(&logs, "info"),
        ["Process exited with return code: -1"]
    );
    // The worker notices when the server goes away.
    srv.shutdown().await;
    tokio::time::timeout(Duration::from_secs(10), running.closed())
        .await
        .expect("closed() resolves once the connection has ended");
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_sessions_run_bash_keep_state_and_stop_their_process_group() {
    let srv = server().await;
    let url = srv.url().to_owned();
    let owner = app_workspace(&url, "ws-terminal-apps").await;
    let base = std::env::temp_dir().join(format!("rhizo-term-{}", std::process::id()));
    let opts = WorkerOptions {
        server_url: url.clone(),
        token: Some(ROOT_TOKEN.into()),
        workspace: Some("public".into()),
        working_dir: Some(base.clone()),
        max_sessions: 2,
        ..Default::default()
    };
    let running = start_worker(WorkerKind::Terminal, opts).await.unwrap();
    let w = Worker::of(&running);
    let svc = owner
        .manager_call("get_service", vec![running.service_id().into()])
        .await
        .unwrap();
    assert_eq!(to_json(&svc)["supported_types"], json!(["terminal"]));
    // compile fills the terminal defaults and keeps the files.
    let compiled = w
        .call(
            &owner,
            "compile",
            json!([{"type": "terminal"}, [{"path": "x"}]]),
        )
        .await
        .unwrap();
    assert_eq!(compiled[0]["entry_point"], "main.sh");
    assert_eq!(compiled[0]["startup_command"], "/bin/bash");
    assert_eq!(compiled[1], json!([{"path": "x"}]));
    install_app(
        &owner,
        "shell",
        json!({"type": "terminal", "files_to_stage": ["notes.txt", "data/a.txt:copied.txt"]}),
        &[
            ("notes.txt", "staged notes\n"),
            ("data/a.txt", "from a folder\n"),
            ("data/deeper/b.txt", "nested\n"),
        ],
    )
    .await;
    let inbox = Inbox::serve(&owner).await;

    let manifest = json!({
        "type": "terminal",
        "files_to_stage": ["notes.txt", "data/a.txt:copied.txt", "data/:folder/"],
    });
    let extra = json!({"manifest": manifest});
    let (config, _) = worker_config(&owner, &url, "shell", "_rapp_term_one__rlb", extra).await;
    let sid = w.call(&owner, "start", json!([config])).await.unwrap();
    let sid = sid.as_str().unwrap().to_owned();

    let r = w
        .call(&owner, "execute", json!([sid, "echo hello"]))
        .await
        .unwrap();
    assert_eq!(stdout_of(&r), "hello");
    // State persists between executes; staged files are in the session directory.
    let r = w.call(&owner, "execute", json!([sid, "cat notes.txt copied.txt"]));
    assert_eq!(stdout_of(&r.await.unwrap()), "staged notes\nfrom a folder");
    let r = w.call(
        &owner,
        "execute",
        json!([sid, "cat folder/a.txt folder/deeper/b.txt"]),
    );
    assert_eq!(stdout_of(&r.await.unwrap()), "from a folder\nnested");
    w.call(&owner, "execute", json!([sid, "cd /tmp"]))
        .await
        .unwrap();
    let r = w
        .call(&owner, "execute", json!([sid, "pwd"]))
        .await
        .unwrap();
    assert_eq!(stdout_of(&r), "/tmp");
    // Output streams to the output callback as it arrives.
    let r = w
        .call_kw(
            &owner,
            "execute",
            json!([sid, "echo streamed-$((6*7))"]),
            Some(json!({"output_callback": Inbox::method(&owner, "output")})),
        )
        .await
        .unwrap();
    assert_eq!(stdout_of(&r), "streamed-42");
    let streamed: String = inbox
        .of("output")
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(streamed.contains("streamed-42"), "{streamed:?}");
    // A background job, to check that stop ends the whole session.
    let r = w
        .call(&owner, "execute", json!([sid, "sleep 1000 & echo pid=$!"]))
        .await
        .unwrap();
    let job = pid_in(&stdout_of(&r));
    let info = w
        .call(&owner, "get_session_info", json!([sid]))
        .await
        .unwrap();
    assert_eq!(info["is_alive"], true);
    assert_eq!(info["status"], "running");
    let shell = info["pid"].as_u64().unwrap() as u32;
    let dir = std::path::PathBuf::from(info["working_dir"].as_str().unwrap());
    assert!(dir.starts_with(&base) && dir.is_dir(), "{dir:?}");

    // Raw keystrokes, reading, the screen and resizing.
    let wrote = w
        .call(&owner, "write_terminal", json!([sid, "echo typed-in\n"]))
        .await
        .unwrap();
    assert_eq!(wrote["bytes_written"], 14);
    let mut read = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !read.contains("typed-in\r\n") && Instant::now() < deadline {
        let r = w.call(&owner, "read_terminal", json!([sid])).await.unwrap();
        read.push_str(r["output"].as_str().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(read.contains("typed-in\r\n"), "{read:?}");
    let screen = w
        .call(&owner, "get_screen_content", json!([sid]))
        .await
        .unwrap();
    assert!(
        screen["content"].as_str().unwrap().contains("typed-in"),
        "{screen}"
    );
    let rendered = w
        .call_kw(
            &owner,
            "get_logs",
            json!([sid]),
            Some(json!({"type": "screen"})),
        )
        .await
        .unwrap();
    assert!(rendered.as_str().unwrap().contains("hello"), "{rendered}");
    let logs = w
        .call(&owner, "get_logs", json!([sid, "stdout"]))
        .await
        .unwrap();
    assert!(logs["total"].as_u64().unwrap() > 0, "{logs}");
    let resized = w
        .call(&owner, "resize_terminal", json!([sid, 40, 100]))
        .await
        .unwrap();
    assert_eq!(resized["success"], true);
    let attached = w.call(&owner, "attach", json!([sid])).await.unwrap();
    assert_eq!(attached["terminal_size"], json!({"rows": 40, "cols": 100}));
    assert!(attached["initial_screen"]
        .as_str()
        .unwrap()
        .contains("typed-in"));

    // A command that does not come back to the prompt in time.
    let r = w
        .call(&owner, "execute", json!([sid, "sleep 2", {"timeout": 0.5}]))
        .await
        .unwrap();
    assert_eq!(r["status"], "error", "{r}");
    assert_eq!(r["error"]["ename"], "TimeoutError", "{r}");

    // The stranger sees nothing and may touch nothing.
    let stranger = connect(&url, None, None).await;
    refused(
        w.call(&stranger, "execute", json!([sid, "id"])).await,
        "PermissionError",
    );
    refused(
        w.call(&stranger, "write_terminal", json!([sid, "id\n"]))
            .await,
        "PermissionError",
    );
    let theirs = w.call(&stranger, "list_sessions", json!([])).await.unwrap();
    assert_eq!(theirs["sessions"], json!([]));
    let ours = w.call(&owner, "list_sessions", json!([])).await.unwrap();
    assert_eq!(ours["sessions"].as_array().unwrap().len(), 1, "{ours}");

    // The session cap (2 here) refuses a third session.
    let (c2, _) = worker_config(&owner, &url, "shell", "_rapp_term_two__rlb", json!({})).await;
    let sid2 = w.call(&owner, "start", json!([c2])).await.unwrap();
    let (c3, _) = worker_config(&owner, &url, "shell", "_rapp_term_three__rlb", json!({})).await;
    refused(
        w.call(&owner, "start", json!([c3])).await,
        "Maximum number of terminal sessions (2)",
    );
    w.call(&owner, "stop", json!([sid2])).await.unwrap();

    // attach with a callback: the initial screen, then updates, until the session ends.
    let attach = {
        let cb = Inbox::method(&owner, "screen");
        let w = Worker {
            addr: w.addr.clone(),
            svc: w.svc.clone(),
        };
        let owner2 = connect(&url, Some(ROOT_TOKEN), Some(owner.workspace())).await;
        let sid = sid.clone();
        tokio::spawn(async move {
            let kw = json!({"on_screen_update": cb});
            let r = w.call_kw(&owner2, "attach", json!([sid]), Some(kw)).await;
            drop(owner2);
            r
        })
    };
    assert!(
        eventually(Duration::from_secs(10), || !inbox.of("screen").is_empty()).await,
        "the initial screen arrives"
    );
    assert_eq!(inbox.of("screen")[0]["type"], "initial");
    w.call(
        &owner,
        "write_terminal",
        json!([sid, "echo attached-$((1+1))\n"]),
    )
    .await
    .unwrap();
    let updated = eventually(Duration::from_secs(10), || {
        inbox
            .of("screen")
            .iter()
            .any(|m| m["type"] == "update" && m["content"].as_str().unwrap().contains("attached-2"))
    })
    .await;
    assert!(updated, "{:?}", inbox.of("screen"));

    // stop ends the shell and its background job, and removes the directory.
    assert!(!gone(shell) && !gone(job));
    w.call(&owner, "stop", json!([sid])).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || gone(shell) && gone(job)).await,
        "shell {shell} and job {job} still run"
    );
    assert!(!dir.exists(), "{dir:?} was not removed");
    refused(
        w.call(&owner, "execute", json!([sid, "echo"])).await,
        "Session not found",
    );
    let detached = tokio::time::timeout(Duration::from_secs(15), attach)
        .await
        .expect("attach returns once the session ends")
        .unwrap()
        .unwrap();
    assert_eq!(detached["detached"], true, "{detached}");

    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&base);
}
