//! A program in a pseudo-terminal: spawned as the leader of a new session (so its process
//! group and session ids are its pid) with the PTY as its controlling terminal, and ended
//! as a whole — SIGTERM and SIGHUP to its process group, then after a grace period SIGKILL
//! to the group and to every other process still in its session (background jobs of a
//! shell live in process groups of their own). The child is always reaped by its waiter
//! task, so no zombie stays behind. Linux: session members are found in `/proc`.

use rustix::process::{kill_process, kill_process_group, Pid, Signal};
use std::path::Path;
use std::time::Duration;

/// Rows and columns of a new terminal.
pub(crate) const DEFAULT_SIZE: (u16, u16) = (30, 200);

/// How long a program gets to exit after SIGTERM/SIGHUP before it is killed.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(3);

/// A spawned program: its child handle (for the waiter) and the PTY's two halves.
pub(crate) struct Spawned {
    pub(crate) child: tokio::process::Child,
    pub(crate) pid: u32,
    pub(crate) reader: pty_process::OwnedReadPty,
    pub(crate) writer: pty_process::OwnedWritePty,
}

/// Spawns `argv` in a new PTY of `size` (rows, cols) in `dir` with exactly `env`.
///
/// Errors: no PTY could be opened, or the program could not be started (not found, not
/// executable) — the message names the program.
pub(crate) fn spawn(
    argv: &[String],
    dir: &Path,
    env: &[(String, String)],
    size: (u16, u16),
) -> Result<Spawned, String> {
    let (program, args) = argv.split_first().ok_or("empty startup command")?;
    let (pty, pts) = pty_process::open().map_err(|e| format!("cannot open a PTY: {e}"))?;
    pty.resize(pty_process::Size::new(size.0, size.1))
        .map_err(|e| format!("cannot size the PTY: {e}"))?;
    let cmd = pty_process::Command::new(program)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(dir)
        .kill_on_drop(true);
    let child = cmd
        .spawn(pts)
        .map_err(|e| format!("cannot start {program:?}: {e}"))?;
    let pid = child.id().ok_or("the program exited at once")?;
    let (reader, writer) = pty.into_split();
    Ok(Spawned {
        child,
        pid,
        reader,
        writer,
    })
}

fn pid(raw: u32) -> Option<Pid> {
    i32::try_from(raw).ok().and_then(Pid::from_raw)
}

/// Asks the program to end: SIGTERM and SIGHUP (interactive shells ignore SIGTERM but
/// leave on SIGHUP, passing it on to their jobs) to its process group.
pub(crate) fn terminate(leader: u32) {
    if let Some(p) = pid(leader) {
        let _ = kill_process_group(p, Signal::TERM);
        let _ = kill_process_group(p, Signal::HUP);
    }
}

/// SIGKILLs the program's process group and every other process of its session.
pub(crate) fn kill_session(leader: u32) {
    if let Some(p) = pid(leader) {
        let _ = kill_process_group(p, Signal::KILL);
    }
    for member in session_members(leader) {
        if let Some(p) = pid(member) {
            let _ = kill_process(p, Signal::KILL);
        }
    }
}

/// The pids of the live processes whose session id is `sid` (from `/proc/<pid>/stat`;
/// zombies excluded).
pub(crate) fn session_members(sid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| parse_stat(&s))
                .is_some_and(|(state, session)| session == sid && state != 'Z')
        })
        .collect()
}

/// (state, session id) from the text of `/proc/<pid>/stat`: `pid (comm) state ppid pgrp
/// session …`, where `comm` may itself contain spaces and parentheses.
pub(crate) fn parse_stat(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let _pgrp = fields.next()?;
    let session = fields.next()?.parse().ok()?;
    Some((state, session))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names() {
        let s = "4242 (my (odd) prog) S 1 4242 4240 34816 4242 4194560 0 0";
        assert_eq!(parse_stat(s), Some(('S', 4240)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_in_its_own_session_list() {
        let me = std::process::id();
        let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
        let (_, sid) = parse_stat(&stat).unwrap();
        assert!(session_members(sid).contains(&me));
    }
}
