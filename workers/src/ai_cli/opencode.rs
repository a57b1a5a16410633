//! OpenCode (`opencode`, `opencode-ai`) in stdout mode, one process per turn:
//! `opencode run --format json [-m provider/model] [--session <id>] [args…]` with the
//! message on stdin (a message on the command line reaches the model wrapped in quotes);
//! every stdout line is a JSON event (`step_start`, `text` with the whole text in
//! `part.text`, `step_finish`, `error`), and the turn ends when the process exits. Every
//! event carries the `sessionID` OpenCode chose; later turns continue that session
//! (`--continue`, the directory's last session, only when none was seen). Interrupt is
//! SIGINT (no control channel).
//!
//! Environment: `OPENCODE_API_KEY` when configured (the provider set up in the worker's
//! `opencode.json` reads it).

use super::adapter::{Adapter, AdapterSettings, CommandSpec, Launch, Mode, Parsed};
use serde_json::Value;

/// The OpenCode adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenCode;

impl Adapter for OpenCode {
    fn name(&self) -> &'static str {
        "opencode"
    }

    fn description(&self) -> &'static str {
        "OpenCode: one `opencode run --format json` process per turn, events from stdout"
    }

    fn default_settings(&self) -> AdapterSettings {
        AdapterSettings {
            binary: "opencode".into(),
            ..Default::default()
        }
    }

    fn mode(&self) -> Mode {
        Mode::PerTurn
    }

    fn command(&self, l: &Launch<'_>, message: Option<&str>) -> CommandSpec {
        let mut args: Vec<String> = vec!["run".into(), "--format".into(), "json".into()];
        if let Some(m) = l.model {
            args.extend(["-m".to_owned(), m.to_owned()]);
        }
        match l.resume {
            Some(id) => args.extend(["--session".to_owned(), id.to_owned()]),
            None if l.turns_done > 0 => args.push("--continue".into()),
            None => {}
        }
        args.extend(l.extra_args.iter().cloned());
        let _ = message; // on stdin
        let mut env = Vec::new();
        if let Some(k) = &l.settings.api_key {
            env.push(("OPENCODE_API_KEY".to_owned(), k.clone()));
        }
        CommandSpec {
            program: l.settings.binary.clone(),
            args,
            env,
        }
    }

    fn parse_output(&self, line: &str) -> Result<Parsed, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        if !v.is_object() {
            return Err("a JSON line that is not an object".into());
        }
        if v.get("type").and_then(Value::as_str) == Some("error") {
            let why = v
                .pointer("/error/data/message")
                .or_else(|| v.pointer("/error/message"))
                .and_then(Value::as_str)
                .unwrap_or("the turn failed");
            return Ok(Parsed::TurnError(format!("opencode: {why}")));
        }
        Ok(Parsed::Event(v))
    }

    fn message_on_stdin(&self) -> bool {
        true
    }

    fn session_ref(&self, event: &Value) -> Option<String> {
        event
            .get("sessionID")
            .and_then(Value::as_str)
            .filter(|s| s.starts_with("ses_"))
            .map(str::to_owned)
    }

    fn text_of(&self, event: &Value) -> Option<String> {
        if event.get("type").and_then(Value::as_str) != Some("text") {
            return None;
        }
        event
            .pointer("/part/text")
            .or_else(|| event.get("text"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_continue_the_session_opencode_named() {
        let s = AdapterSettings {
            binary: "opencode".into(),
            ..Default::default()
        };
        let mut l = Launch {
            dir: std::path::Path::new("/tmp"),
            cli_session: "u",
            model: Some("local/m"),
            extra_args: &[],
            turns_done: 0,
            resume: None,
            settings: &s,
        };
        let first = OpenCode.command(&l, Some("hi there"));
        assert_eq!(first.args, ["run", "--format", "json", "-m", "local/m"]);
        l.turns_done = 1;
        l.resume = Some("ses_abc");
        let next = OpenCode.command(&l, Some("again"));
        assert!(next.args.windows(2).any(|w| w == ["--session", "ses_abc"]));
        let ev: Value = serde_json::from_str(
            r#"{"type":"text","sessionID":"ses_abc","part":{"type":"text","text":"first reply"}}"#,
        )
        .unwrap();
        assert_eq!(OpenCode.session_ref(&ev).as_deref(), Some("ses_abc"));
        assert_eq!(OpenCode.text_of(&ev).as_deref(), Some("first reply"));
        let err = OpenCode
            .parse_output(
                r#"{"type":"error","error":{"name":"APIError","data":{"message":"boom"}}}"#,
            )
            .unwrap();
        assert_eq!(err, Parsed::TurnError("opencode: boom".into()));
        assert!(OpenCode.parse_output("garbage").is_err());
    }
}
