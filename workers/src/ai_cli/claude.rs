//! Claude Code (`claude`, `@anthropic-ai/claude-code`) in print mode with streaming JSON
//! both ways, one process for the whole session:
//! `claude -p --input-format stream-json --output-format stream-json --verbose
//! --session-id <uuid> [--model M] [args…]` (after an interrupt, `--resume <uuid>`
//! instead of `--session-id`; the model is passed again, it is not remembered). A message is
//! one stdin line `{"type": "user", "message": {"role": "user", "content": "…"}}`; an
//! interrupt is the control line `{"type": "control_request", "request_id", "request":
//! {"subtype": "interrupt"}}`, which ends the turn (a `result` of subtype
//! `error_during_execution`) and keeps the process.
//!
//! File-watch mode by default: the events are the lines Claude Code appends to its own
//! transcript, `$CLAUDE_CONFIG_DIR/projects/<slug>/<uuid>.jsonl` (`~/.claude` by default;
//! the slug is the working directory with every character but ASCII letters and digits
//! replaced by `-`), and stdout only tells the end of a turn: its `{"type": "result"}` line
//! (`is_error: true` → the turn failed). In stdout mode the stream-json events themselves
//! (`system`, `assistant`, `user`, `result`) are logged.
//!
//! Environment: `ANTHROPIC_API_KEY` (worker-side `CLAUDE_API_KEY`/`ANTHROPIC_API_KEY`) and
//! `ANTHROPIC_BASE_URL` when configured.

use super::adapter::{Adapter, AdapterSettings, CommandSpec, Launch, Mode, Parsed};
use serde_json::{json, Value};
use std::path::PathBuf;

/// The Claude Code adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Claude;

/// The transcript directory name Claude Code derives from a working directory.
pub fn project_slug(dir: &std::path::Path) -> String {
    dir.to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn config_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("CLAUDE_CONFIG_DIR") {
        return Some(PathBuf::from(d));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".claude"))
}

impl Adapter for Claude {
    fn name(&self) -> &'static str {
        "claude"
    }

    fn description(&self) -> &'static str {
        "Claude Code (Anthropic): one process per session, stream-json in and out, events from its JSONL transcript"
    }

    fn default_settings(&self) -> AdapterSettings {
        AdapterSettings {
            binary: "claude".into(),
            ..Default::default()
        }
    }

    fn mode(&self) -> Mode {
        Mode::Persistent
    }

    fn command(&self, l: &Launch<'_>, _message: Option<&str>) -> CommandSpec {
        let mut args: Vec<String> = [
            "-p",
            "--input-format",
            "stream-json",
            "--output-format",
            "stream-json",
            "--verbose",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if l.turns_done == 0 {
            args.extend(["--session-id".to_owned(), l.cli_session.to_owned()]);
        } else {
            args.extend(["--resume".to_owned(), l.cli_session.to_owned()]);
        }
        if let Some(m) = l.model {
            args.extend(["--model".to_owned(), m.to_owned()]);
        }
        args.extend(l.extra_args.iter().cloned());
        let mut env = Vec::new();
        if let Some(k) = &l.settings.api_key {
            env.push(("ANTHROPIC_API_KEY".to_owned(), k.clone()));
        }
        if let Some(b) = &l.settings.api_base {
            env.push(("ANTHROPIC_BASE_URL".to_owned(), b.clone()));
        }
        CommandSpec {
            program: l.settings.binary.clone(),
            args,
            env,
        }
    }

    fn needs_file_watcher(&self) -> bool {
        true
    }

    fn log_file_path(&self, l: &Launch<'_>) -> Option<PathBuf> {
        let dir = std::path::absolute(l.dir).unwrap_or_else(|_| l.dir.to_path_buf());
        Some(
            config_dir()?
                .join("projects")
                .join(project_slug(&dir))
                .join(format!("{}.jsonl", l.cli_session)),
        )
    }

    fn parse_output(&self, line: &str) -> Result<Parsed, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let Some(kind) = v.get("type").and_then(Value::as_str) else {
            return Err("a JSON line without a type".into());
        };
        Ok(match kind {
            "result"
                if v.get("subtype").and_then(Value::as_str) == Some("error_during_execution")
                    && v.get("is_error").and_then(Value::as_bool) != Some(true) =>
            {
                Parsed::TurnError("interrupted".into())
            }
            "result" => {
                let failed = v.get("is_error").and_then(Value::as_bool) == Some(true)
                    || v.get("subtype")
                        .and_then(Value::as_str)
                        .is_some_and(|s| s.starts_with("error"));
                if failed {
                    let why = v
                        .get("result")
                        .and_then(Value::as_str)
                        .or_else(|| v.get("subtype").and_then(Value::as_str))
                        .unwrap_or("the turn failed");
                    Parsed::TurnError(format!("claude: {why}"))
                } else {
                    Parsed::EndOfTurn(Some(v))
                }
            }
            _ => Parsed::Event(v),
        })
    }

    fn parse_log_line(&self, line: &str) -> Result<Parsed, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        match v.get("type").and_then(Value::as_str) {
            Some("user" | "assistant" | "system" | "summary" | "result") => Ok(Parsed::Event(v)),
            Some(_) => Ok(Parsed::Skip),
            None => Err("a transcript line without a type".into()),
        }
    }

    fn format_input(&self, message: &str) -> String {
        let line = json!({
            "type": "user",
            "message": {"role": "user", "content": message},
        });
        format!("{line}\n")
    }

    fn interrupt_input(&self) -> Option<String> {
        let id = uuid::Uuid::new_v4().to_string();
        let line = json!({"type": "control_request", "request_id": id, "request": {"subtype": "interrupt"}});
        Some(format!("{line}\n"))
    }

    fn text_of(&self, event: &Value) -> Option<String> {
        if event.get("type").and_then(Value::as_str) != Some("assistant") {
            return None;
        }
        let content = event.pointer("/message/content")?;
        if let Some(s) = content.as_str() {
            return Some(s.to_owned());
        }
        let text: String = content
            .as_array()?
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect();
        (!text.is_empty()).then_some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch<'a>(s: &'a AdapterSettings, turns: u64) -> Launch<'a> {
        Launch {
            dir: std::path::Path::new("/tmp/my.proj_x"),
            cli_session: "0b6c2c1e-0000-4000-8000-000000000001",
            model: Some("claude-sonnet"),
            extra_args: &[],
            turns_done: turns,
            resume: None,
            settings: s,
        }
    }

    #[test]
    fn command_lines_and_transcript_path() {
        let s = AdapterSettings {
            binary: "claude".into(),
            api_key: Some("sk-test".into()),
            api_base: Some("http://127.0.0.1:1".into()),
            ..Default::default()
        };
        let c = Claude.command(&launch(&s, 0), None);
        assert_eq!(c.program, "claude");
        assert!(c
            .args
            .windows(2)
            .any(|w| w == ["--session-id", "0b6c2c1e-0000-4000-8000-000000000001"]));
        assert!(c.args.windows(2).any(|w| w == ["--model", "claude-sonnet"]));
        assert!(c
            .env
            .contains(&("ANTHROPIC_API_KEY".into(), "sk-test".into())));
        let resumed = Claude.command(&launch(&s, 1), None);
        assert!(resumed.args.iter().any(|a| a == "--resume"));
        assert_eq!(
            project_slug(std::path::Path::new("/tmp/my.proj_x")),
            "-tmp-my-proj-x"
        );
        let p = Claude.log_file_path(&launch(&s, 0)).unwrap();
        assert!(
            p.ends_with("projects/-tmp-my-proj-x/0b6c2c1e-0000-4000-8000-000000000001.jsonl"),
            "{p:?}"
        );
    }

    #[test]
    fn output_lines() {
        let end = Claude
            .parse_output(r#"{"type":"result","subtype":"success","is_error":false,"result":"hi"}"#)
            .unwrap();
        assert!(matches!(end, Parsed::EndOfTurn(Some(_))));
        let failed = Claude
            .parse_output(r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 500"}"#)
            .unwrap();
        assert_eq!(failed, Parsed::TurnError("claude: API Error: 500".into()));
        assert!(Claude.parse_output("not json").is_err());
        assert!(Claude.parse_output("[1]").is_err());
        let a: Value = serde_json::from_str(
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"he"},{"type":"tool_use"},{"type":"text","text":"llo"}]}}"#,
        )
        .unwrap();
        assert_eq!(Claude.text_of(&a).as_deref(), Some("hello"));
        let input: Value = serde_json::from_str(Claude.format_input("fix it").trim()).unwrap();
        assert_eq!(input["message"]["content"], "fix it");
        let stop: Value = serde_json::from_str(Claude.interrupt_input().unwrap().trim()).unwrap();
        assert_eq!(stop["request"]["subtype"], "interrupt");
    }
}
