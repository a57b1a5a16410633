//! The a2a-proxy worker (apps-workers.md §4.6, types `["a2a-agent"]`): an app whose
//! manifest lists A2A agents (`a2aAgents: {name: {url, headers?}}`) becomes one Hypha
//! service per agent.
//!
//! `start` connects a new Hypha client as the app's client (shared with mcp-proxy,
//! [`crate::mcp_proxy::proxy`]); for each agent it reads the agent card at
//! `{url}/.well-known/agent-card.json` (with the agent's `headers`, as on every request)
//! and registers service `<agent name>` (`type: "a2a-agent-proxy"`, public, the app's
//! `app_id`) with
//!
//! - `skills`: one callable per card skill, `skill(text="", **kw)`, which sends the A2A
//!   JSON-RPC `message/send` (A2A 0.3: a user message with one text part) to the card's
//!   `url` (the configured URL when the card has none) and returns the space-joined text
//!   parts of a completed task's artifacts, `"Task {id} status: {state}"` for a task in
//!   any other state, or the joined text parts of a message reply;
//! - `run(message)`: concatenates the text parts of an A2A message map (a plain string is
//!   taken as the text) and calls the first skill;
//! - `agent_card`: `{name, description, version, capabilities {streaming,
//!   push_notifications}, default_input_modes, default_output_modes}`.
//!
//! Then `default` (no-op `setup`). Failure rules as mcp-proxy's.

use crate::mcp_proxy::proxy::{self, json_args, log, segment, Connect, ServiceSpec, SharedLogs};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rhizo_client::handler;
use rhizo_protocol::value::{from_json, map};
use rmpv::Value;
use serde_json::{json, Value as J};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The app type this worker runs.
pub const APP_TYPE: &str = "a2a-agent";

/// The HTTP timeout of every request to an agent (the reference's httpx timeout).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The worker: a [`proxy::ProxyHost`] connecting A2A agents.
pub(crate) fn host(
    server_url: String,
    worker: std::sync::Weak<rhizo_client::Client>,
) -> proxy::ProxyHost {
    proxy::ProxyHost::new(
        APP_TYPE,
        "a2aAgents",
        "A2A agent",
        server_url,
        worker,
        connect,
    )
}

/// One agent of a session.
struct Agent {
    name: String,
    /// Where `message/send` goes.
    endpoint: String,
    http: reqwest::Client,
    logs: SharedLogs,
}

/// [`proxy::ConnectFn`] for A2A agents.
fn connect(
    ctx: Connect<'_>,
    name: String,
    entry: J,
) -> Pin<Box<dyn Future<Output = anyhow::Result<ServiceSpec>> + Send + '_>> {
    Box::pin(async move {
        let url = entry
            .get("url")
            .and_then(J::as_str)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| anyhow::anyhow!("Missing URL for A2A agent: {name}"))?
            .trim_end_matches('/')
            .to_owned();
        let mut headers = HeaderMap::new();
        if let Some(J::Object(h)) = entry.get("headers") {
            for (k, v) in h {
                let v = v
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string());
                headers.insert(
                    HeaderName::from_bytes(k.as_bytes())
                        .map_err(|e| anyhow::anyhow!("bad header name {k:?}: {e}"))?,
                    HeaderValue::from_str(&v)
                        .map_err(|e| anyhow::anyhow!("bad value of header {k:?}: {e}"))?,
                );
            }
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(HTTP_TIMEOUT)
            .build()?;
        let card_url = format!("{url}/.well-known/agent-card.json");
        let resp = http
            .get(&card_url)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("fetching the agent card {card_url}: {e}"))?;
        anyhow::ensure!(
            resp.status().is_success(),
            "fetching the agent card {card_url}: HTTP {}",
            resp.status()
        );
        let card: J = resp
            .json()
            .await
            .map_err(|e| anyhow::anyhow!("the agent card {card_url} is not JSON: {e}"))?;
        let text = |v: Option<&J>| v.and_then(J::as_str).unwrap_or("").to_owned();
        let endpoint = card
            .get("url")
            .and_then(J::as_str)
            .filter(|u| !u.is_empty())
            .unwrap_or(&url)
            .to_owned();
        let agent = Arc::new(Agent {
            name: name.clone(),
            endpoint,
            http,
            logs: ctx.logs.clone(),
        });
        let skills: Vec<J> = card
            .get("skills")
            .and_then(J::as_array)
            .cloned()
            .unwrap_or_default();
        log(
            ctx.logs,
            "info",
            format!("A2A agent {name}: {} skills", skills.len()),
        );
        let fields = map([
            ("name", format!("A2A Agent: {name}").into()),
            (
                "description",
                format!("A2A agent service for {name}").into(),
            ),
            ("type", "a2a-agent-proxy".into()),
            ("config", map([("visibility", "public".into())])),
            ("app_id", ctx.config.app_id.as_str().into()),
        ]);
        let mut spec = ServiceSpec::new(ctx.client, &name, fields);
        let mut skill_list = Vec::new();
        for (i, s) in skills.iter().enumerate() {
            let sname = text(s.get("name").or_else(|| s.get("id")));
            let desc = text(s.get("description"));
            let schema = from_json(&json!({
                "name": sname,
                "description": desc,
                "parameters": {"type": "object",
                    "properties": {"text": {"type": "string", "description": "The message text"}}},
            }));
            let h = skill_handler(agent.clone());
            let member = format!("skills.{}", segment(&sname, i));
            skill_list.push(spec.method(member, &sname, &desc, Some(schema), h));
        }
        spec.set("skills", Value::Array(skill_list));
        let run = run_handler(agent.clone(), !skills.is_empty());
        let run = spec.method(
            "run".into(),
            "run",
            &format!("Send a message to the A2A agent {name} (its first skill)"),
            None,
            run,
        );
        spec.set("run", run);
        let caps = card.get("capabilities");
        let flag = |k: &str| {
            caps.and_then(|c| c.get(k))
                .and_then(J::as_bool)
                .unwrap_or(false)
        };
        let modes = |k: &str| card.get(k).cloned().unwrap_or(json!([]));
        let agent_card = json!({
            "name": text(card.get("name")),
            "description": text(card.get("description")),
            "version": text(card.get("version")),
            "capabilities": {
                "streaming": flag("streaming"),
                "push_notifications": flag("pushNotifications") || flag("push_notifications"),
            },
            "default_input_modes": card.get("defaultInputModes").cloned()
                .unwrap_or_else(|| modes("default_input_modes")),
            "default_output_modes": card.get("defaultOutputModes").cloned()
                .unwrap_or_else(|| modes("default_output_modes")),
        });
        spec.set("agent_card", from_json(&agent_card));
        Ok(spec)
    })
}

impl Agent {
    /// Sends `text` with `message/send` and returns the reply's text.
    ///
    /// Errors: the request fails, the agent answers a JSON-RPC error.
    async fn send(&self, text: &str) -> anyhow::Result<String> {
        let req = json!({
            "jsonrpc": "2.0",
            "id": uuid::Uuid::new_v4().to_string(),
            "method": "message/send",
            "params": {"message": {
                "kind": "message",
                "role": "user",
                "messageId": uuid::Uuid::new_v4().to_string(),
                "parts": [{"kind": "text", "text": text}],
            }},
        });
        let resp = self.http.post(&self.endpoint).json(&req).send().await?;
        let status = resp.status();
        let body: J = resp
            .json()
            .await
            .map_err(|e| anyhow::anyhow!("HTTP {status}, not a JSON-RPC answer: {e}"))?;
        if let Some(err) = body.get("error") {
            anyhow::bail!(
                "A2A error {}: {}",
                err.get("code").cloned().unwrap_or(J::Null),
                err.get("message").and_then(J::as_str).unwrap_or("")
            );
        }
        let result = body
            .get("result")
            .ok_or_else(|| anyhow::anyhow!("the answer has no result: {body}"))?;
        Ok(reply_text(result))
    }
}

/// The text of a `message/send` result (a Task or a Message).
fn reply_text(result: &J) -> String {
    let parts_text = |parts: Option<&J>| -> Vec<String> {
        parts
            .and_then(J::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("text").and_then(J::as_str).map(str::to_owned))
            .collect()
    };
    if result.get("kind").and_then(J::as_str) == Some("task") {
        let state = result
            .pointer("/status/state")
            .and_then(J::as_str)
            .unwrap_or("unknown");
        let artifacts = result.get("artifacts").and_then(J::as_array);
        if state == "completed" && artifacts.is_some_and(|a| !a.is_empty()) {
            let texts: Vec<String> = artifacts
                .into_iter()
                .flatten()
                .flat_map(|a| parts_text(a.get("parts")))
                .collect();
            return texts.join(" ");
        }
        let id = result.get("id").and_then(J::as_str).unwrap_or("");
        return format!("Task {id} status: {state}");
    }
    if result.get("parts").is_some() {
        return parts_text(result.get("parts")).join(" ");
    }
    result.to_string()
}

fn skill_handler(agent: Arc<Agent>) -> rhizo_client::Handler {
    handler(move |call| {
        let agent = agent.clone();
        async move {
            let (args, kwargs) = json_args(&call);
            let text = kwargs
                .get("text")
                .or(args.first())
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                })
                .unwrap_or_default();
            call_agent(&agent, &text).await
        }
    })
}

async fn call_agent(agent: &Agent, text: &str) -> Result<Value, String> {
    log(
        &agent.logs,
        "debug",
        format!("Calling A2A agent {} with {text:?}", agent.name),
    );
    match agent.send(text).await {
        Ok(t) => Ok(t.into()),
        Err(e) => {
            let msg = format!("Error calling A2A agent {}: {e:#}", agent.name);
            log(&agent.logs, "error", msg.clone());
            Err(msg)
        }
    }
}

/// `run(message)`: the message's text parts, concatenated, to the first skill.
fn run_handler(agent: Arc<Agent>, has_skill: bool) -> rhizo_client::Handler {
    handler(move |call| {
        let agent = agent.clone();
        async move {
            let (args, kwargs) = json_args(&call);
            let message = kwargs
                .get("message")
                .or(args.first())
                .cloned()
                .unwrap_or(J::Null);
            let text = match &message {
                J::String(s) => s.clone(),
                m => m
                    .get("parts")
                    .and_then(J::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|p| {
                        p.get("kind")
                            .and_then(J::as_str)
                            .is_none_or(|k| k == "text")
                    })
                    .filter_map(|p| p.get("text").and_then(J::as_str))
                    .collect::<String>(),
            };
            if !has_skill {
                return Ok(format!("A2A agent {} processed: {text}", agent.name).into());
            }
            call_agent(&agent, &text).await
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_give_their_text() {
        let task = json!({"kind": "task", "id": "t1", "status": {"state": "completed"},
            "artifacts": [{"parts": [{"kind": "text", "text": "a"}, {"kind": "text", "text": "b"}]}]});
        assert_eq!(reply_text(&task), "a b");
        let working = json!({"kind": "task", "id": "t2", "status": {"state": "working"}});
        assert_eq!(reply_text(&working), "Task t2 status: working");
        let msg = json!({"kind": "message", "parts": [{"kind": "text", "text": "hi"}]});
        assert_eq!(reply_text(&msg), "hi");
    }
}
