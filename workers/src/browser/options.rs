//! The browser worker's settings (apps-workers.md §4.7): the reference's `PLAYWRIGHT_*`
//! options that matter for server-side apps, under rhizo's own names. Read once at start;
//! a value that does not parse is an error naming the variable.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `RHIZO_CHROMIUM` | `chromium` on `PATH` | the Chromium/Chrome executable |
//! | `RHIZO_BROWSER_MAX_SESSIONS` (or `HYPHA_MAX_BROWSER_SESSIONS`) | 20 | sessions at once |
//! | `RHIZO_BROWSER_VIEWPORT_WIDTH` / `_HEIGHT` | 1280 / 720 | page size, CSS pixels |
//! | `RHIZO_BROWSER_DEVICE_SCALE_FACTOR` | 1 | device pixels per CSS pixel |
//! | `RHIZO_BROWSER_LOCALE` | — | e.g. `fr-FR` (`navigator.language`, `Intl`) |
//! | `RHIZO_BROWSER_TIMEZONE` | — | IANA zone, e.g. `Europe/Paris` |
//! | `RHIZO_BROWSER_USER_AGENT` | Chromium's | the `User-Agent` of every request |
//! | `RHIZO_BROWSER_EXTRA_HTTP_HEADERS` | — | JSON object of headers sent with every request |
//! | `RHIZO_BROWSER_DISABLE_WEB_SECURITY` | `false` | `--disable-web-security` (the reference turns it on by default; rhizo does not) |
//! | `RHIZO_BROWSER_NO_SANDBOX` | `true` when run as root | `--no-sandbox` (Chromium refuses root otherwise) |
//! | `RHIZO_PYODIDE_URL` | `{server}/assets/pyodide/` | a full Pyodide distribution (mirror) for web-python apps |

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The default session cap (the reference's `HYPHA_MAX_BROWSER_SESSIONS`).
pub const DEFAULT_MAX_BROWSER_SESSIONS: usize = 20;

/// Settings of the browser worker; see the module table for the variables.
#[derive(Debug, Clone)]
pub struct BrowserOptions {
    /// The Chromium executable (absolute, or a name looked up on `PATH` at launch).
    pub chromium: PathBuf,
    /// The most sessions (pages) at once.
    pub max_sessions: usize,
    /// Viewport width, CSS pixels.
    pub viewport_width: u32,
    /// Viewport height, CSS pixels.
    pub viewport_height: u32,
    /// Device pixels per CSS pixel (screenshots are this many times larger).
    pub device_scale_factor: f64,
    /// Locale override, e.g. `en-US`.
    pub locale: Option<String>,
    /// Time zone override (IANA name).
    pub timezone: Option<String>,
    /// User-Agent override.
    pub user_agent: Option<String>,
    /// Headers added to every request of every session.
    pub extra_headers: BTreeMap<String, String>,
    /// Pass `--disable-web-security` (no same-origin policy; off by default).
    pub disable_web_security: bool,
    /// Pass `--no-sandbox` (needed when the worker runs as root).
    pub no_sandbox: bool,
    /// Where web-python pages load Pyodide from; `None`: the server's `/assets/pyodide/`.
    pub pyodide_url: Option<String>,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        BrowserOptions {
            chromium: PathBuf::from("chromium"),
            max_sessions: DEFAULT_MAX_BROWSER_SESSIONS,
            viewport_width: 1280,
            viewport_height: 720,
            device_scale_factor: 1.0,
            locale: None,
            timezone: None,
            user_agent: None,
            extra_headers: BTreeMap::new(),
            disable_web_security: false,
            no_sandbox: rustix::process::getuid().is_root(),
            pyodide_url: None,
        }
    }
}

impl BrowserOptions {
    /// The defaults overlaid with the process environment.
    ///
    /// Errors: a variable whose value does not parse (the message names it).
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// The defaults overlaid with `var(name)` (tests pass a map, never the process env).
    ///
    /// Errors: as [`BrowserOptions::from_env`].
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut o = BrowserOptions::default();
        let get = |k: &str| {
            var(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        fn parse<T: std::str::FromStr>(k: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{k}={v:?} is not a valid value for {k}"))
        }
        if let Some(v) = get("RHIZO_CHROMIUM") {
            o.chromium = PathBuf::from(v);
        }
        if let Some(v) =
            get("RHIZO_BROWSER_MAX_SESSIONS").or_else(|| get("HYPHA_MAX_BROWSER_SESSIONS"))
        {
            o.max_sessions = parse("RHIZO_BROWSER_MAX_SESSIONS", v)?;
        }
        if let Some(v) = get("RHIZO_BROWSER_VIEWPORT_WIDTH") {
            o.viewport_width = parse("RHIZO_BROWSER_VIEWPORT_WIDTH", v)?;
        }
        if let Some(v) = get("RHIZO_BROWSER_VIEWPORT_HEIGHT") {
            o.viewport_height = parse("RHIZO_BROWSER_VIEWPORT_HEIGHT", v)?;
        }
        if let Some(v) = get("RHIZO_BROWSER_DEVICE_SCALE_FACTOR") {
            o.device_scale_factor = parse("RHIZO_BROWSER_DEVICE_SCALE_FACTOR", v)?;
        }
        o.locale = get("RHIZO_BROWSER_LOCALE");
        o.timezone = get("RHIZO_BROWSER_TIMEZONE");
        o.user_agent = get("RHIZO_BROWSER_USER_AGENT");
        if let Some(v) = get("RHIZO_BROWSER_EXTRA_HTTP_HEADERS") {
            o.extra_headers = serde_json::from_str(&v).map_err(|e| {
                format!("RHIZO_BROWSER_EXTRA_HTTP_HEADERS must be a JSON object of strings: {e}")
            })?;
        }
        if let Some(v) = get("RHIZO_BROWSER_DISABLE_WEB_SECURITY") {
            o.disable_web_security = flag("RHIZO_BROWSER_DISABLE_WEB_SECURITY", &v)?;
        }
        if let Some(v) = get("RHIZO_BROWSER_NO_SANDBOX") {
            o.no_sandbox = flag("RHIZO_BROWSER_NO_SANDBOX", &v)?;
        }
        o.pyodide_url = get("RHIZO_PYODIDE_URL");
        if o.max_sessions == 0 || o.viewport_width == 0 || o.viewport_height == 0 {
            return Err("the browser session cap and viewport size must be positive".into());
        }
        Ok(o)
    }
}

/// `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`.
fn flag(k: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{k}={v:?}: expected true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn opts(pairs: &[(&str, &str)]) -> Result<BrowserOptions, String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        BrowserOptions::from_vars(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_reference() {
        let o = opts(&[]).unwrap();
        assert_eq!((o.viewport_width, o.viewport_height), (1280, 720));
        assert_eq!(o.max_sessions, 20);
        assert!(!o.disable_web_security);
        assert!(o.extra_headers.is_empty() && o.locale.is_none());
    }

    #[test]
    fn variables_override_and_bad_values_are_named() {
        let o = opts(&[
            ("RHIZO_BROWSER_VIEWPORT_WIDTH", "375"),
            ("HYPHA_MAX_BROWSER_SESSIONS", "3"),
            ("RHIZO_BROWSER_LOCALE", "fr-FR"),
            ("RHIZO_BROWSER_EXTRA_HTTP_HEADERS", r#"{"X-Api": "v2"}"#),
            ("RHIZO_BROWSER_NO_SANDBOX", "no"),
        ])
        .unwrap();
        assert_eq!(o.viewport_width, 375);
        assert_eq!(o.max_sessions, 3);
        assert_eq!(o.locale.as_deref(), Some("fr-FR"));
        assert_eq!(o.extra_headers["X-Api"], "v2");
        assert!(!o.no_sandbox);
        let e = opts(&[("RHIZO_BROWSER_VIEWPORT_HEIGHT", "tall")]).unwrap_err();
        assert!(e.contains("RHIZO_BROWSER_VIEWPORT_HEIGHT"), "{e}");
        let e = opts(&[("RHIZO_BROWSER_EXTRA_HTTP_HEADERS", "[1]")]).unwrap_err();
        assert!(e.contains("JSON object"), "{e}");
        assert!(opts(&[("RHIZO_BROWSER_MAX_SESSIONS", "0")]).is_err());
    }
}
