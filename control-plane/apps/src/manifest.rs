//! The application manifest (apps-workers.md §2.1) as plain `serde_json::Value`: unknown
//! keys are kept verbatim, and only the fields the controller acts on are read here.
//!
//! * [`validate_app_manifest`] — the `validate_app_manifest` method of §1.2;
//! * [`merge`] — the shallow merge used for `<config>` patches, compile results and
//!   `edit_app` (§1.2, §1.4 steps 8 and 10);
//! * [`check_installable`] — the refusals of §1.4 step 9;
//! * [`AutoscalingConfig`] / [`autoscaling`] — `manifest.autoscaling` (§5.1), with rhizo's
//!   [`MetricType`] and panic settings;
//! * [`StartupConfig`] — `manifest.startup_config` and the call arguments that overlay it
//!   (§2.1, §1.4 step 11, §1.5 step 3).
//!
//! Pure functions: no I/O; nothing here panics on any input.

use crate::source::json_type;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The app types `validate_app_manifest` knows without a warning (§1.2).
pub const KNOWN_APP_TYPES: [&str; 5] = [
    "window",
    "web-worker",
    "web-python",
    "mcp-server",
    "a2a-agent",
];

/// Types of rhizo's built-in and user workers that `validate_app_manifest` accepts without a
/// warning too, although §1.2's list leaves them out.
pub const WORKER_APP_TYPES: [&str; 8] = [
    "python-eval",
    "terminal",
    "conda-jupyter-kernel",
    "iframe",
    "hypha",
    "web-app",
    "ai-cli",
    "code-agent",
];

/// The `mcpServers.*.type` values that pass without a warning (§1.2).
const MCP_SERVER_TYPES: [&str; 2] = ["streamable-http", "stdio"];

/// The `entry_point` endings that pass without a warning (§1.2).
const ENTRY_POINT_SUFFIXES: [&str; 3] = [".html", ".js", ".py"];

/// Absent or `null`.
fn missing(value: Option<&Value>) -> bool {
    matches!(value, None | Some(Value::Null))
}

/// Absent, `null`, or an empty string, list or object.
fn blank(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(_) => false,
    }
}

// === validate_app_manifest ===

/// §1.2 `validate_app_manifest`: returns `{valid, errors, warnings, suggestions}` (a bool
/// and three lists of strings); `valid` is true when `errors` is empty.
///
/// * errors: not an object; `name`, `type` or `version` absent or null; `name`, `type` or
///   `version` not a string; `entry_point` not a string; for `mcp-server`, `mcpServers` not
///   a non-empty object, an entry not an object or lacking `type` or `url`; for
///   `a2a-agent`, `a2aAgents` not a non-empty object, an entry not an object, lacking a
///   string `url`, or with `headers` that is not an object;
/// * warnings: a `type` outside [`KNOWN_APP_TYPES`] and [`WORKER_APP_TYPES`]; an MCP server
///   `type` other than `streamable-http`/`stdio`; an A2A `url` that is not http(s); an
///   `entry_point` not ending in `.html`, `.js` or `.py`;
/// * suggestions: no `description`; no `tags`.
///
/// Never panics.
pub fn validate_app_manifest(manifest: &Value) -> Value {
    let mut report = Report::default();
    match manifest {
        Value::Object(m) => report.check(m),
        other => report.errors.push(format!(
            "The manifest must be an object, got {}",
            json_type(other)
        )),
    }
    json!({
        "valid": report.errors.is_empty(),
        "errors": report.errors,
        "warnings": report.warnings,
        "suggestions": report.suggestions,
    })
}

/// The three lists `validate_app_manifest` fills.
#[derive(Default)]
struct Report {
    errors: Vec<String>,
    warnings: Vec<String>,
    suggestions: Vec<String>,
}

impl Report {
    fn check(&mut self, m: &Map<String, Value>) {
        for field in ["name", "type", "version"] {
            match m.get(field) {
                None | Some(Value::Null) => {
                    self.errors.push(format!("Missing required field: {field}"))
                }
                Some(Value::String(_)) => {}
                Some(other) => self.errors.push(format!(
                    "Field '{field}' must be a string, got {}",
                    json_type(other)
                )),
            }
        }
        let app_type = m.get("type").and_then(Value::as_str);
        if let Some(t) = app_type {
            if !KNOWN_APP_TYPES.contains(&t) && !WORKER_APP_TYPES.contains(&t) {
                self.warnings.push(format!(
                    "Unknown app type '{t}': it needs a worker that supports it (known types: {})",
                    KNOWN_APP_TYPES.join(", ")
                ));
            }
        }
        match app_type {
            Some("mcp-server") => self.check_mcp(m.get("mcpServers")),
            Some("a2a-agent") => self.check_a2a(m.get("a2aAgents")),
            _ => {}
        }
        match m.get("entry_point") {
            None | Some(Value::Null) => {}
            Some(Value::String(entry)) => {
                if !ENTRY_POINT_SUFFIXES.iter().any(|s| entry.ends_with(s)) {
                    self.warnings.push(format!(
                        "entry_point '{entry}' does not end in .html, .js or .py"
                    ));
                }
            }
            Some(other) => self.errors.push(format!(
                "Field 'entry_point' must be a string, got {}",
                json_type(other)
            )),
        }
        if blank(m.get("description")) {
            self.suggestions
                .push("Add a 'description' so users know what the app does".to_owned());
        }
        if blank(m.get("tags")) {
            self.suggestions
                .push("Add 'tags' to make the app easier to find".to_owned());
        }
    }

    fn check_mcp(&mut self, servers: Option<&Value>) {
        let servers = match servers {
            Some(Value::Object(s)) if !s.is_empty() => s,
            _ => {
                self.errors.push(
                    "mcp-server apps need 'mcpServers': a non-empty object of \
                     {name: {type, url}}"
                        .to_owned(),
                );
                return;
            }
        };
        for (name, server) in servers {
            let Value::Object(server) = server else {
                self.errors.push(format!(
                    "MCP server '{name}' must be an object {{type, url}}, got {}",
                    json_type(server)
                ));
                continue;
            };
            for key in ["type", "url"] {
                if missing(server.get(key)) {
                    self.errors
                        .push(format!("MCP server '{name}' is missing '{key}'"));
                }
            }
            match server.get("type") {
                None | Some(Value::Null) => {}
                Some(Value::String(t)) if MCP_SERVER_TYPES.contains(&t.as_str()) => {}
                Some(other) => self.warnings.push(format!(
                    "MCP server '{name}' has type {other}; expected 'streamable-http' or 'stdio'"
                )),
            }
        }
    }

    fn check_a2a(&mut self, agents: Option<&Value>) {
        let agents = match agents {
            Some(Value::Object(a)) if !a.is_empty() => a,
            _ => {
                self.errors.push(
                    "a2a-agent apps need 'a2aAgents': a non-empty object of \
                     {name: {url, headers?}}"
                        .to_owned(),
                );
                return;
            }
        };
        for (name, agent) in agents {
            let Value::Object(agent) = agent else {
                self.errors.push(format!(
                    "A2A agent '{name}' must be an object {{url, headers?}}, got {}",
                    json_type(agent)
                ));
                continue;
            };
            match agent.get("url") {
                None | Some(Value::Null) => self
                    .errors
                    .push(format!("A2A agent '{name}' is missing 'url'")),
                Some(Value::String(url)) => {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        self.warnings.push(format!(
                            "A2A agent '{name}' url '{url}' should start with http:// or https://"
                        ));
                    }
                }
                Some(other) => self.errors.push(format!(
                    "A2A agent '{name}' url must be a string, got {}",
                    json_type(other)
                )),
            }
            match agent.get("headers") {
                None | Some(Value::Null) | Some(Value::Object(_)) => {}
                Some(other) => self.errors.push(format!(
                    "A2A agent '{name}' headers must be an object, got {}",
                    json_type(other)
                )),
            }
        }
    }
}

// === merge, check_installable ===

/// Shallow merge: each key of `patch` replaces the same key of `base` (§1.2 `edit_app`,
/// §1.4 steps 8 and 10). A `patch` that is not an object changes nothing; a `base` that is
/// not an object is replaced by a copy of `patch`.
pub fn merge(base: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        return;
    };
    match base {
        Value::Object(base) => {
            for (key, value) in patch {
                base.insert(key.clone(), value.clone());
            }
        }
        other => *other = Value::Object(patch.clone()),
    }
}

/// The refusals of §1.4 step 9, in the reference's order, as the message the caller shows:
/// a manifest that is not an object; `services` or `service_ids` keys ("… is not allowed
/// …"); a missing, null, empty or non-string `type`; type `application`; type `hypha`
/// without a source (`has_source` false).
///
/// Not done here: defaulting `entry_point` to `source`, which the caller writes.
pub fn check_installable(manifest: &Value, has_source: bool) -> Result<(), String> {
    let Value::Object(m) = manifest else {
        return Err(format!(
            "The app manifest must be an object, got {}",
            json_type(manifest)
        ));
    };
    for key in ["services", "service_ids"] {
        if m.contains_key(key) {
            return Err(format!(
                "The manifest field '{key}' is not allowed at install: the server records it \
                 from the app's first run; remove it"
            ));
        }
    }
    match m.get("type") {
        None | Some(Value::Null) => Err("The app manifest has no 'type': set it to the type of \
             app a worker runs, e.g. 'window', 'web-python' or 'python-eval'"
            .to_owned()),
        Some(Value::String(t)) if t.trim().is_empty() => Err(
            "The app manifest's 'type' is empty: set it to the type of app a worker runs, \
                 e.g. 'window', 'web-python' or 'python-eval'"
                .to_owned(),
        ),
        Some(Value::String(t)) if t == "application" => Err("'application' is the artifact \
             type of every app, not an app type: set 'type' to the type of app a worker runs, \
             e.g. 'window', 'web-python' or 'python-eval'"
            .to_owned()),
        Some(Value::String(t)) if t == "hypha" && !has_source => {
            Err("An app of type 'hypha' needs a source".to_owned())
        }
        Some(Value::String(_)) => Ok(()),
        Some(other) => Err(format!(
            "The app manifest's 'type' must be a string, got {}",
            json_type(other)
        )),
    }
}

// === impl AutoscalingConfig ===

/// What the autoscaler measures (`autoscaling.metric_type`). The reference accepts any
/// string here and always scales on requests per minute; rhizo knows two metrics and
/// refuses other names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    /// `"load"` (the default, §5.2–§5.3): requests per minute per instance against
    /// `target_requests_per_instance`, with the reference's thresholds and cooldowns.
    #[default]
    Load,
    /// `"concurrency"` (rhizo, Knative-style): calls in flight per instance against
    /// `target_concurrency_per_instance`, with short cooldowns and stable window.
    Concurrency,
}

/// `manifest.autoscaling` (§5.1). The defaults are those of [`Default`] for the `"load"`
/// metric and of [`AutoscalingConfig::defaults_for`] in general. The reference also accepts
/// `target_load_per_instance` and `custom_metric_function` and never uses them: they (and
/// any other key) are ignored here. `metric_type`, `target_concurrency_per_instance`,
/// `panic_threshold` and `stable_window` are rhizo's (the reference ignores
/// `metric_type`); the decision they drive is [`crate::autoscaler`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutoscalingConfig {
    /// Whether the autoscaler runs for the app; `false` by default.
    pub enabled: bool,
    /// Instances below which the autoscaler does not scale down; 1. rhizo also starts
    /// instances up to it (pre-warming); 0 lets an idle app scale to zero.
    pub min_instances: u32,
    /// Instances above which the autoscaler does not scale up; 10. At least 1.
    pub max_instances: u32,
    /// Load one instance is sized for, in requests per minute; 100. Greater than 0.
    pub target_requests_per_instance: f64,
    /// Scale up when the average load exceeds this fraction of the target; 0.9.
    pub scale_up_threshold: f64,
    /// Scale down when the average load falls below this fraction of the target; 0.3.
    /// Below `scale_up_threshold`.
    pub scale_down_threshold: f64,
    /// Seconds after a scale-up before the next one; 300 (`"concurrency"`: 5).
    pub scale_up_cooldown: f64,
    /// Seconds after a scale-down before the next one, and of idleness before scaling to
    /// zero; 600 (`"concurrency"`: 30).
    pub scale_down_cooldown: f64,
    /// The metric scaled on; `"load"`.
    pub metric_type: MetricType,
    /// Calls in flight one instance is sized for (`"concurrency"` only); 10. Greater than 0.
    pub target_concurrency_per_instance: f64,
    /// Panic when the load grows by this factor within one sample, or needs this many
    /// times the running instances; 2. Greater than 1.
    pub panic_threshold: f64,
    /// Seconds of samples the concurrency metric averages over, and that panic mode lasts
    /// after its last trigger; 60 (`"concurrency"`: 30). Greater than 0.
    pub stable_window: f64,
}

impl Default for AutoscalingConfig {
    fn default() -> Self {
        AutoscalingConfig::defaults_for(MetricType::Load)
    }
}

impl AutoscalingConfig {
    /// The defaults for `metric`: the reference's (§5.1) for [`MetricType::Load`]; for
    /// [`MetricType::Concurrency`] the cooldowns are 5 s up and 30 s down and the stable
    /// window 30 s, so that it reacts within seconds.
    pub fn defaults_for(metric: MetricType) -> Self {
        let (scale_up_cooldown, scale_down_cooldown, stable_window) = match metric {
            MetricType::Load => (300.0, 600.0, 60.0),
            MetricType::Concurrency => (5.0, 30.0, 30.0),
        };
        AutoscalingConfig {
            enabled: false,
            min_instances: 1,
            max_instances: 10,
            target_requests_per_instance: 100.0,
            scale_up_threshold: 0.9,
            scale_down_threshold: 0.3,
            scale_up_cooldown,
            scale_down_cooldown,
            metric_type: metric,
            target_concurrency_per_instance: 10.0,
            panic_threshold: 2.0,
            stable_window,
        }
    }

    /// Parses an `autoscaling` value (§5.1; `edit_app`'s `autoscaling_config`): `None` for
    /// null, `false` or `{}` ("empty/falsy dict → null"); otherwise an object whose absent
    /// or null fields take the defaults of its `metric_type` ([`Self::defaults_for`]).
    ///
    /// Errors: a value that is not an object; `enabled` not a boolean; `metric_type` not
    /// `"load"` or `"concurrency"`; instance counts that are not non-negative integers;
    /// other fields that are not finite numbers; a negative threshold or cooldown; any
    /// refusal of [`Self::validate`].
    pub fn from_json(value: &Value) -> Result<Option<Self>, String> {
        let m = match value {
            Value::Null | Value::Bool(false) => return Ok(None),
            Value::Object(m) if m.is_empty() => return Ok(None),
            Value::Object(m) => m,
            other => {
                return Err(format!(
                    "'autoscaling' must be an object of autoscaling settings (enabled, \
                     min_instances, max_instances, …), got {}",
                    json_type(other)
                ))
            }
        };
        let field = |key: &str| m.get(key).filter(|v| !v.is_null());
        let metric = match field("metric_type") {
            None => MetricType::Load,
            Some(v) => match v.as_str() {
                Some("load") => MetricType::Load,
                Some("concurrency") => MetricType::Concurrency,
                _ => {
                    return Err(format!(
                        "autoscaling.metric_type must be \"load\" or \"concurrency\", got {v}"
                    ))
                }
            },
        };
        let mut config = AutoscalingConfig::defaults_for(metric);
        if let Some(v) = field("enabled") {
            config.enabled = v.as_bool().ok_or_else(|| {
                format!(
                    "autoscaling.enabled must be true or false, got {}",
                    json_type(v)
                )
            })?;
        }
        for (key, slot) in [
            ("min_instances", &mut config.min_instances),
            ("max_instances", &mut config.max_instances),
        ] {
            if let Some(v) = field(key) {
                *slot = count(v).ok_or_else(|| {
                    format!("autoscaling.{key} must be a whole number ≥ 0, got {v}")
                })?;
            }
        }
        for (key, slot) in [
            (
                "target_requests_per_instance",
                &mut config.target_requests_per_instance,
            ),
            ("scale_up_threshold", &mut config.scale_up_threshold),
            ("scale_down_threshold", &mut config.scale_down_threshold),
            ("scale_up_cooldown", &mut config.scale_up_cooldown),
            ("scale_down_cooldown", &mut config.scale_down_cooldown),
            (
                "target_concurrency_per_instance",
                &mut config.target_concurrency_per_instance,
            ),
            ("panic_threshold", &mut config.panic_threshold),
            ("stable_window", &mut config.stable_window),
        ] {
            if let Some(v) = field(key) {
                *slot = v
                    .as_f64()
                    .filter(|n| n.is_finite() && *n >= 0.0)
                    .ok_or_else(|| format!("autoscaling.{key} must be a number ≥ 0, got {v}"))?;
            }
        }
        config.validate()?;
        Ok(Some(config))
    }

    /// Checks the relations between fields, for a config however it was built (parsed,
    /// deserialized or written in code): `target_requests_per_instance`,
    /// `target_concurrency_per_instance` and `stable_window` greater than 0;
    /// `max_instances` at least 1; `min_instances` ≤ `max_instances`;
    /// `scale_down_threshold` below `scale_up_threshold`; `panic_threshold` greater than
    /// 1; every number finite and none negative. The error names the field.
    pub fn validate(&self) -> Result<(), String> {
        for (key, n) in [
            (
                "target_requests_per_instance",
                self.target_requests_per_instance,
            ),
            ("scale_up_threshold", self.scale_up_threshold),
            ("scale_down_threshold", self.scale_down_threshold),
            ("scale_up_cooldown", self.scale_up_cooldown),
            ("scale_down_cooldown", self.scale_down_cooldown),
            (
                "target_concurrency_per_instance",
                self.target_concurrency_per_instance,
            ),
            ("panic_threshold", self.panic_threshold),
            ("stable_window", self.stable_window),
        ] {
            if !(n.is_finite() && n >= 0.0) {
                return Err(format!("autoscaling.{key} must be a number ≥ 0, got {n}"));
            }
        }
        for (key, n) in [
            (
                "target_requests_per_instance",
                self.target_requests_per_instance,
            ),
            (
                "target_concurrency_per_instance",
                self.target_concurrency_per_instance,
            ),
            ("stable_window", self.stable_window),
        ] {
            if n <= 0.0 {
                return Err(format!("autoscaling.{key} must be greater than 0"));
            }
        }
        if self.max_instances == 0 {
            return Err("autoscaling.max_instances must be at least 1".into());
        }
        if self.min_instances > self.max_instances {
            return Err(format!(
                "autoscaling.min_instances ({}) must not exceed autoscaling.max_instances ({})",
                self.min_instances, self.max_instances
            ));
        }
        if self.scale_down_threshold >= self.scale_up_threshold {
            return Err(format!(
                "autoscaling.scale_down_threshold ({}) must be below \
                 autoscaling.scale_up_threshold ({})",
                self.scale_down_threshold, self.scale_up_threshold
            ));
        }
        if self.panic_threshold <= 1.0 {
            return Err(format!(
                "autoscaling.panic_threshold must be greater than 1, got {}",
                self.panic_threshold
            ));
        }
        Ok(())
    }
}

/// A non-negative whole number that fits `u32` (`2.0` counts, as in pydantic).
fn count(value: &Value) -> Option<u32> {
    if let Some(n) = value.as_u64() {
        return u32::try_from(n).ok();
    }
    let n = value.as_f64()?;
    (n >= 0.0 && n.fract() == 0.0 && n <= f64::from(u32::MAX)).then_some(n as u32)
}

/// The app's autoscaling settings: [`AutoscalingConfig::from_json`] of
/// `manifest["autoscaling"]` (absent → `None`; a non-object manifest has none).
pub fn autoscaling(manifest: &Value) -> Result<Option<AutoscalingConfig>, String> {
    AutoscalingConfig::from_json(manifest.get("autoscaling").unwrap_or(&Value::Null))
}

// === impl StartupConfig ===

/// `manifest.startup_config` (§2.1): how `start` launches the app unless the call says
/// otherwise. At install it is the manifest's value overlaid with the non-`None` call
/// arguments (§1.4 step 11); `start` overlays its own arguments again (§1.5 step 3). Other
/// keys of a stored `startup_config` are not kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartupConfig {
    /// Seconds `start` waits for the app's service; `start` defaults it to 60.
    pub timeout: Option<f64>,
    /// A service name (a `client:svc` form is reduced to `svc` by `start`) or a boolean:
    /// `true` → `"default"`, `false` → detached, no waiting (§1.5 step 4).
    pub wait_for_service: Option<Value>,
    /// An object of extra keyword arguments passed to the worker's `start`.
    pub additional_kwargs: Option<Value>,
    /// Seconds without activity after which the instance is stopped; `≤ 0` never. `start`
    /// defaults it to 600 (§1.5 step 6).
    pub stop_after_inactive: Option<f64>,
}

impl StartupConfig {
    /// [`StartupConfig::from_json`] of `manifest["startup_config"]` (absent → all `None`).
    pub fn from_manifest(manifest: &Value) -> Result<Self, String> {
        Self::from_json(manifest.get("startup_config").unwrap_or(&Value::Null))
    }

    /// Parses a `startup_config` value: null or an object whose keys may be absent or null.
    ///
    /// Errors (naming the field): not an object; `timeout` or `stop_after_inactive` not a
    /// finite number (`timeout` must also be ≥ 0); `wait_for_service` neither a string nor a
    /// boolean; `additional_kwargs` not an object.
    pub fn from_json(value: &Value) -> Result<Self, String> {
        let m = match value {
            Value::Null => return Ok(StartupConfig::default()),
            Value::Object(m) => m,
            other => {
                return Err(format!(
                    "'startup_config' must be an object {{timeout, wait_for_service, \
                     additional_kwargs, stop_after_inactive}}, got {}",
                    json_type(other)
                ))
            }
        };
        let field = |key: &str| m.get(key).filter(|v| !v.is_null());
        let seconds = |key: &str, min: f64| -> Result<Option<f64>, String> {
            field(key)
                .map(|v| {
                    v.as_f64()
                        .filter(|n| n.is_finite() && *n >= min)
                        .ok_or_else(|| {
                            format!("startup_config.{key} must be a number of seconds, got {v}")
                        })
                })
                .transpose()
        };
        let timeout = seconds("timeout", 0.0)?;
        let stop_after_inactive = seconds("stop_after_inactive", f64::NEG_INFINITY)?;
        let wait_for_service = match field("wait_for_service") {
            None => None,
            Some(v @ (Value::String(_) | Value::Bool(_))) => Some(v.clone()),
            Some(other) => {
                return Err(format!(
                    "startup_config.wait_for_service must be a service name or true/false, \
                     got {}",
                    json_type(other)
                ))
            }
        };
        let additional_kwargs = match field("additional_kwargs") {
            None => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(other) => {
                return Err(format!(
                    "startup_config.additional_kwargs must be an object, got {}",
                    json_type(other)
                ))
            }
        };
        Ok(StartupConfig {
            timeout,
            wait_for_service,
            additional_kwargs,
            stop_after_inactive,
        })
    }

    /// Each field of `other` that is `Some` replaces the same field of `self`.
    pub fn overlay(&mut self, other: &StartupConfig) {
        if other.timeout.is_some() {
            self.timeout = other.timeout;
        }
        if other.wait_for_service.is_some() {
            self.wait_for_service.clone_from(&other.wait_for_service);
        }
        if other.additional_kwargs.is_some() {
            self.additional_kwargs.clone_from(&other.additional_kwargs);
        }
        if other.stop_after_inactive.is_some() {
            self.stop_after_inactive = other.stop_after_inactive;
        }
    }

    /// The object stored as `manifest.startup_config`, without the `None` fields. Whole
    /// seconds are written as integers (`60`, not `60.0`).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(t) = self.timeout {
            m.insert("timeout".into(), number(t));
        }
        if let Some(w) = &self.wait_for_service {
            m.insert("wait_for_service".into(), w.clone());
        }
        if let Some(k) = &self.additional_kwargs {
            m.insert("additional_kwargs".into(), k.clone());
        }
        if let Some(s) = self.stop_after_inactive {
            m.insert("stop_after_inactive".into(), number(s));
        }
        Value::Object(m)
    }
}

/// A JSON number: an integer when `n` is whole (and fits `i64`).
fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests;
