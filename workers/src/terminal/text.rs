//! Terminal text without a terminal: control-character filtering, UTF-8 decoding across
//! read boundaries, ANSI stripping, the prompt heuristic that ends an `execute`, and the
//! cleaning that turns a command's raw output into what the command printed (echo and
//! prompts removed). All pure; the PTY side is in `pty.rs`.

/// Keeps printable characters, BEL, BS, TAB, LF, VT, FF, CR, ESC and all non-ASCII; drops
/// the other C0 controls and DEL (apps-workers.md §4.2).
pub(crate) fn filter_controls(s: &str) -> String {
    s.chars()
        .filter(|&c| !c.is_ascii_control() || matches!(c, '\x07'..='\r' | '\x1b'))
        .collect()
}

/// Decodes a byte stream as UTF-8 chunk by chunk: a character split across two reads is
/// held back until its rest arrives; invalid bytes become U+FFFD.
#[derive(Debug, Default)]
pub(crate) struct Utf8Stream {
    carry: Vec<u8>,
}

impl Utf8Stream {
    /// The text of `bytes` (after what was held back), holding back an incomplete tail.
    pub(crate) fn decode(&mut self, bytes: &[u8]) -> String {
        self.carry.extend_from_slice(bytes);
        let mut out = String::with_capacity(self.carry.len());
        let mut rest: &[u8] = &self.carry;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{fffd}');
                            rest = &after[n..];
                        }
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.carry = rest.to_vec();
        out
    }
}

/// Removes ANSI escape sequences: CSI (`ESC [ … final`), OSC (`ESC ] … BEL` or `ESC \`),
/// DCS/SOS/PM/APC strings, charset selections (`ESC ( B`) and other two-byte escapes.
pub(crate) fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('[') => {
                // Parameters and intermediates, then one final byte in @..~.
                for c in it.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']' | 'P' | 'X' | '^' | '_') => {
                while let Some(c) = it.next() {
                    if c == '\x07' {
                        break;
                    }
                    if c == '\x1b' && it.peek() == Some(&'\\') {
                        it.next();
                        break;
                    }
                }
            }
            Some('(' | ')' | '*' | '+' | '#' | '%') => {
                it.next();
            }
            _ => {}
        }
    }
    out
}

/// ANSI stripped, line ends made `\n`, and each line as a terminal would show it: a bare
/// CR returns to the line's start (later text overwrites earlier), BS deletes the
/// previous character, BEL and the other controls vanish.
pub(crate) fn normalize(s: &str) -> String {
    let stripped = strip_ansi(s);
    let mut out = String::with_capacity(stripped.len());
    for (i, raw) in stripped.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut line: Vec<char> = Vec::new();
        let mut col: usize = 0;
        for c in raw.chars() {
            match c {
                '\r' => col = 0,
                '\x08' => col = col.saturating_sub(1),
                '\t' => {
                    put(&mut line, col, '\t');
                    col += 1;
                }
                c if c.is_control() => {}
                c => {
                    put(&mut line, col, c);
                    col += 1;
                }
            }
        }
        out.extend(line);
    }
    out
}

fn put(line: &mut Vec<char>, col: usize, c: char) {
    if col < line.len() {
        line[col] = c;
    } else {
        line.push(c);
    }
}

/// Whether `line` (already normalised) ends like a shell or Python prompt: in `$ `, `# `,
/// `$`, `#`, or `>>>`/`>>> `.
pub(crate) fn looks_like_prompt(line: &str) -> bool {
    let t = line.strip_suffix(' ').unwrap_or(line);
    t.ends_with('$') || t.ends_with('#') || t.ends_with(">>>")
}

/// The prompt heuristic of `execute`: whether the output captured since the command was
/// written (`raw`) shows the program waiting for input again. True when the echo line
/// has ended (at least one newline) and the last, unfinished line looks like a prompt, or
/// when `>>>` has been seen twice.
pub(crate) fn prompt_reached(raw: &str) -> bool {
    let text = normalize(raw);
    let Some((_, last)) = text.rsplit_once('\n') else {
        return false;
    };
    looks_like_prompt(last) || text.matches(">>>").count() >= 2
}

/// What a command printed: `raw` normalised, with the echo of the script's lines (alone,
/// or after a prompt) and the final prompt removed, and surrounding blank lines trimmed.
pub(crate) fn clean_output(raw: &str, script: &str) -> String {
    let text = normalize(raw);
    let script: Vec<&str> = script
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut next = 0;
    let mut out: Vec<&str> = Vec::new();
    for line in text.split('\n') {
        let t = line.trim_end();
        if next < script.len() && t.trim_start() == script[next] {
            next += 1;
            continue;
        }
        let after_prompt = script.iter().any(|s| {
            t.strip_suffix(s)
                .is_some_and(|p| !p.trim().is_empty() && is_prompt_prefix(p))
        });
        if after_prompt {
            next = next.max(1);
            continue;
        }
        out.push(line);
    }
    while out
        .last()
        .is_some_and(|l| l.trim().is_empty() || looks_like_prompt(l.trim_end()))
    {
        out.pop();
    }
    while out.first().is_some_and(|l| l.trim().is_empty()) {
        out.remove(0);
    }
    out.join("\n")
}

/// A prompt before echoed input: a shell prompt, `>>>` or Python's continuation `...`.
fn is_prompt_prefix(p: &str) -> bool {
    let t = p.trim_end();
    looks_like_prompt(t) || t.ends_with("...")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_filtered_but_escapes_and_unicode_kept() {
        assert_eq!(
            filter_controls("a\0b\x01\x7f\x1b[0m\r\n\té"),
            "ab\x1b[0m\r\n\té"
        );
    }

    #[test]
    fn utf8_split_across_reads_is_joined() {
        let bytes = "héllo €".as_bytes();
        let mut d = Utf8Stream::default();
        let mut out = String::new();
        for b in bytes {
            out.push_str(&d.decode(std::slice::from_ref(b)));
        }
        assert_eq!(out, "héllo €");
        assert_eq!(Utf8Stream::default().decode(b"a\xffb"), "a\u{fffd}b");
    }

    #[test]
    fn ansi_sequences_are_stripped() {
        let s = "\x1b[?2004h\x1b]0;root@h: /tmp\x07\x1b[01;32mroot\x1b[00m:# \x1b(Bx\x1b=";
        assert_eq!(strip_ansi(s), "root:# x");
        assert_eq!(strip_ansi("a\x1bP1$r\x1b\\b"), "ab");
    }

    #[test]
    fn carriage_returns_and_backspaces_act_like_a_terminal() {
        assert_eq!(normalize("echo hi\r\n\rhi\r\n"), "echo hi\nhi\n");
        assert_eq!(normalize("50%\r100%"), "100%");
        assert_eq!(normalize("abc\x08\x08X"), "aXc");
    }

    #[test]
    fn the_prompt_heuristic() {
        assert!(!prompt_reached("echo hello"));
        assert!(!prompt_reached("echo hello\r\nhello\r\n"));
        assert!(prompt_reached("echo hello\r\nhello\r\nbash-5.2# "));
        assert!(prompt_reached(
            "ls\r\n\x1b[?2004h\x1b[01;34muser@h\x1b[00m:~$ "
        ));
        assert!(prompt_reached("ls\r\nx\r\nuser@h:~$"));
        assert!(prompt_reached("print(1)\r\n1\r\n>>> "));
        assert!(!prompt_reached("sleep 3\r\n"));
        assert!(!prompt_reached("for i in 1 2\r\n> "));
    }

    #[test]
    fn cleaning_removes_echo_and_prompts() {
        let raw = "echo hello\r\n\x1b[?2004l\rhello\r\n\x1b[?2004hbash-5.2# ";
        assert_eq!(clean_output(raw, "echo hello"), "hello");
        // Typed before the shell was ready: the tty echoes, then readline again.
        let raw = "pwd\r\nbash-5.2# pwd\r\n/tmp\r\nbash-5.2# ";
        assert_eq!(clean_output(raw, "pwd"), "/tmp");
        // Several lines, each echoed after a prompt.
        let raw = "echo a\r\na\r\n$ echo b\r\nb\r\n$ ";
        assert_eq!(clean_output(raw, "echo a\necho b\n"), "a\nb");
        // Output that merely contains the command's text stays.
        let raw = "cat f\r\ncat f\r\n# ";
        assert_eq!(clean_output(raw, "cat f"), "cat f");
        let raw = ">>> print(2)\r\n2\r\n>>> ";
        assert_eq!(clean_output(raw, "print(2)"), "2");
    }
}
