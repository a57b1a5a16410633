//! What environment a `conda-jupyter-kernel` app asks for (apps-workers.md §4.3), read
//! from its manifest's `dependencies` and `channels`, and the rule for what rhizo can build
//! without conda: environments are made with `uv`, so every dependency must be installable
//! from PyPI.
//!
//! `dependencies` is a string (one requirement) or a list whose items are strings or
//! `{"pip": [...]}` maps (flattened: their items are pip requirements). Each string is one
//! of:
//! - a PEP 508 requirement — `six`, `requests>=2`, `six==1.16.0`, `pkg[extra]; markers`,
//!   `name @ https://…` — installed as is;
//! - `python`, `python=3.11`, `python==3.11` or `python>=3.10`: the interpreter version,
//!   handed to `uv venv --python` (the interpreter must be installed on the worker's
//!   machine: uv does not download one);
//! - `pip`, `ipykernel`, `jupyter_client`, `pyzmq`: accepted (the worker installs the
//!   kernel packages itself).
//!
//! Refused, with an error that lists every offending entry, because only conda can
//! provide them: a channel prefix (`conda-forge::numpy`), a conda version pin with a
//! single `=` or a space (`numpy=1.26`, `numpy 1.26`, `numpy=1.26=py311_0` — write
//! `numpy==1.26.*`), a name of [`CONDA_ONLY`] or of an R package (`r-…`), and anything that
//! is not a requirement (a string starting with `-`, which would be a uv option, or other
//! characters where a name belongs). `channels` (a string or a list of strings, default
//! `["conda-forge"]`) is accepted and otherwise ignored.

use crate::error::{WorkerError, WorkerResult};
use rhizo_protocol::value::{get, set};
use rmpv::Value;
use sha2::{Digest, Sha256};

/// Package names that exist only as conda packages (system libraries, toolchains, CUDA,
/// R), or whose PyPI namesake is something else; refused.
pub(crate) const CONDA_ONLY: &[&str] = &[
    "_libgcc_mutex",
    "_openmp_mutex",
    "blas",
    "ca-certificates",
    "cudatoolkit",
    "cudnn",
    "ffmpeg",
    "gcc",
    "gfortran",
    "gxx",
    "libblas",
    "libffi",
    "libgcc",
    "libgcc-ng",
    "liblapack",
    "libstdcxx-ng",
    "libzlib",
    "mkl",
    "ncurses",
    "nodejs",
    "openssl",
    "r-base",
    "readline",
    "tk",
    "xz",
    "zlib",
];

/// The packages every environment gets: the kernel and its client library.
pub(crate) const KERNEL_PACKAGES: &[&str] = &["ipykernel", "jupyter_client"];

/// The `hypha-rpc` the environment gets unless the app names one itself (so that scripts
/// can `from hypha_rpc import connect_to_server`): the version rhizo's compatibility suite
/// is tested with.
pub(crate) const HYPHA_RPC: &str = "hypha-rpc==0.21.47";

/// Bumped when what an environment contains changes for the same spec (new base
/// packages): old cache entries then no longer match.
const KEY_VERSION: &str = "rhizo-uv-env-1";

/// The environment an app asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvSpec {
    /// The interpreter request for `uv venv --python` (`"3.11"`, `">=3.10"`), or `None`
    /// for the worker's own Python.
    pub(crate) python: Option<String>,
    /// The pip requirements, trimmed, sorted and without duplicates; without the
    /// kernel packages (see [`EnvSpec::install_list`]).
    pub(crate) packages: Vec<String>,
}

impl EnvSpec {
    /// What `uv pip install` gets: [`KERNEL_PACKAGES`], [`HYPHA_RPC`] unless the app
    /// names `hypha-rpc` itself, then the app's packages.
    pub(crate) fn install_list(&self) -> Vec<String> {
        let mut list: Vec<String> = KERNEL_PACKAGES.iter().map(|p| p.to_string()).collect();
        if !self.packages.iter().any(|p| name_of(p) == "hypha-rpc") {
            list.push(HYPHA_RPC.to_owned());
        }
        list.extend(self.packages.iter().cloned());
        list
    }

    /// The cache key: the hex sha256 of the canonical spec — [`KEY_VERSION`], the
    /// interpreter (the request, else `default_python`, the worker's interpreter) and the
    /// sorted install list, one per line.
    pub(crate) fn key(&self, default_python: &str) -> String {
        let python = self.python.as_deref().unwrap_or(default_python);
        let mut canonical = format!("{KEY_VERSION}\npython {python}\n");
        let mut list = self.install_list();
        list.sort();
        for p in list {
            canonical.push_str(&p);
            canonical.push('\n');
        }
        hex::encode(Sha256::digest(canonical.as_bytes()))
    }
}

/// The manifest's requirement strings: `dependencies` as a flat list (string → one
/// entry, `{"pip": [...]}` flattened), trimmed, empty ones dropped.
///
/// Errors: [`WorkerError::Invalid`] for an entry that is neither a string nor a
/// `{"pip": [strings]}` map.
pub(crate) fn dependency_strings(manifest: &Value) -> WorkerResult<Vec<String>> {
    let bad = |what: String| {
        WorkerError::Invalid(format!(
            "dependencies must be a string or a list of requirement strings and \
             {{\"pip\": [...]}} maps; {what}"
        ))
    };
    let items: Vec<&Value> = match get(manifest, "dependencies") {
        None | Some(Value::Nil) => Vec::new(),
        Some(v @ Value::String(_)) => vec![v],
        Some(Value::Array(a)) => a.iter().collect(),
        Some(other) => return Err(bad(format!("got {other}"))),
    };
    let mut out = Vec::new();
    for item in items {
        match item {
            Value::String(s) => out.extend(s.as_str().map(str::to_owned)),
            Value::Map(entries) => {
                for (k, v) in entries {
                    let pip = v
                        .as_array()
                        .filter(|_| k.as_str() == Some("pip"))
                        .ok_or_else(|| bad(format!("got {item}")))?;
                    for p in pip {
                        let s = p
                            .as_str()
                            .ok_or_else(|| bad(format!("got {p} under pip")))?;
                        out.push(s.to_owned());
                    }
                }
            }
            other => return Err(bad(format!("got {other}"))),
        }
    }
    Ok(out
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

/// The [`EnvSpec`] of a manifest (see the module docs for the rule).
///
/// Errors: [`WorkerError::Invalid`] for a malformed `dependencies`, or naming every
/// dependency only conda can provide, each with the reason.
pub(crate) fn env_spec(manifest: &Value) -> WorkerResult<EnvSpec> {
    let mut python = None;
    let mut packages = Vec::new();
    let mut refused = Vec::new();
    for dep in dependency_strings(manifest)? {
        match classify(&dep) {
            Dep::Python(v) => python = v.or(python),
            Dep::Builtin => {}
            Dep::Pip => packages.push(dep),
            Dep::Refused(why) => refused.push(format!("{dep:?} ({why})")),
        }
    }
    if !refused.is_empty() {
        return Err(WorkerError::Invalid(format!(
            "this worker builds Python environments with uv from PyPI (no conda), so these \
             conda-only dependencies cannot be installed: {}; use PyPI requirements \
             (e.g. numpy==1.26.*) instead",
            refused.join(", ")
        )));
    }
    packages.sort();
    packages.dedup();
    Ok(EnvSpec { python, packages })
}

/// `compile`'s manifest: `entry_point` defaults to `main.py`, `dependencies` becomes the
/// flat list of strings, `channels` a list (default `["conda-forge"]`).
///
/// Errors: those of [`env_spec`] (compile refuses what start would refuse), a manifest
/// that is not a map, or `channels` that is neither a string nor a list of strings.
pub(crate) fn compile_manifest(mut manifest: Value) -> WorkerResult<Value> {
    if !manifest.is_map() {
        return Err(WorkerError::Argument(
            "compile(): 'manifest' must be a map".into(),
        ));
    }
    env_spec(&manifest)?;
    if get(&manifest, "entry_point").is_none_or(Value::is_nil) {
        set(&mut manifest, "entry_point", "main.py".into());
    }
    let deps = dependency_strings(&manifest)?;
    set(
        &mut manifest,
        "dependencies",
        Value::Array(deps.into_iter().map(Value::from).collect()),
    );
    let channels = match get(&manifest, "channels") {
        None | Some(Value::Nil) => vec![Value::from("conda-forge")],
        Some(s @ Value::String(_)) => vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_str) => a.clone(),
        Some(other) => {
            return Err(WorkerError::Invalid(format!(
                "channels must be a string or a list of strings, got {other}"
            )))
        }
    };
    set(&mut manifest, "channels", Value::Array(channels));
    Ok(manifest)
}

/// What one dependency string is.
#[derive(Debug, PartialEq)]
enum Dep {
    /// The interpreter, with its version request if any.
    Python(Option<String>),
    /// A kernel package the worker installs anyway.
    Builtin,
    /// A pip requirement.
    Pip,
    /// Only conda can provide it, for this reason.
    Refused(&'static str),
}

fn classify(dep: &str) -> Dep {
    if dep.starts_with('-') {
        return Dep::Refused("not a requirement: options cannot be passed to the installer");
    }
    if dep.contains("::") {
        return Dep::Refused("a conda channel prefix");
    }
    if dep.contains("://") && !dep.contains('@') {
        // A bare URL (`https://…/pkg.whl`, `git+https://…`), which uv accepts.
        return Dep::Pip;
    }
    let name_len = dep
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .unwrap_or(dep.len());
    let (name, rest) = dep.split_at(name_len);
    if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Dep::Refused("not a package name");
    }
    let norm = normalise(name);
    let rest = rest.trim_start();
    let conda_pin = (rest.starts_with('=') && !rest.starts_with("=="))
        || rest.starts_with(|c: char| c.is_ascii_digit() || c == '*');
    if norm == "python" {
        let version = rest.trim_start_matches('=').trim();
        return match () {
            _ if rest.is_empty() => Dep::Python(None),
            _ if rest.starts_with('=') && !version.is_empty() && !version.contains('=') => {
                Dep::Python(Some(version.to_owned()))
            }
            _ if rest.starts_with(['<', '>', '~', '!']) => Dep::Python(Some(rest.to_owned())),
            _ => Dep::Refused("not a Python version uv understands"),
        };
    }
    if conda_pin {
        return Dep::Refused("a conda version pin; pip pins use ==");
    }
    if !(rest.is_empty() || rest.starts_with(['[', '(', ';', '@', '<', '>', '=', '!', '~'])) {
        return Dep::Refused("not a pip requirement");
    }
    if CONDA_ONLY.contains(&norm.as_str()) || norm.starts_with("r-") {
        return Dep::Refused("a conda-only package");
    }
    if ["pip", "ipykernel", "jupyter-client", "pyzmq"].contains(&norm.as_str()) && rest.is_empty() {
        return Dep::Builtin;
    }
    Dep::Pip
}

/// A PEP 503 normalised name: lower case, runs of `-_.` as one `-`.
fn normalise(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The normalised package name of a requirement string.
fn name_of(req: &str) -> String {
    let end = req
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .unwrap_or(req.len());
    normalise(&req[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhizo_protocol::value::{from_json, to_json};
    use serde_json::json;

    fn spec(deps: serde_json::Value) -> WorkerResult<EnvSpec> {
        env_spec(&from_json(&json!({ "dependencies": deps })))
    }

    #[test]
    fn pip_requirements_are_accepted_sorted_and_deduplicated() {
        let s = spec(json!(["six==1.16.0", "requests>=2", {"pip": ["six==1.16.0", "attrs"]}, "pkg[extra]; python_version>'3'", "  "]))
            .unwrap();
        assert_eq!(
            s.packages,
            [
                "attrs",
                "pkg[extra]; python_version>'3'",
                "requests>=2",
                "six==1.16.0"
            ]
        );
        assert_eq!(s.python, None);
        assert_eq!(spec(json!("six")).unwrap().packages, ["six"]);
        assert!(spec(json!(null)).unwrap().packages.is_empty());
        assert_eq!(
            spec(json!(["name @ https://example.org/x.whl"]))
                .unwrap()
                .packages
                .len(),
            1
        );
    }

    #[test]
    fn python_pins_become_the_interpreter_request() {
        let s = spec(json!(["python=3.11", "pip", "ipykernel", "six"])).unwrap();
        assert_eq!(s.python.as_deref(), Some("3.11"));
        assert_eq!(
            s.packages,
            ["six"],
            "pip and the kernel packages are the worker's"
        );
        assert_eq!(
            spec(json!(["python==3.12"])).unwrap().python.as_deref(),
            Some("3.12")
        );
        assert_eq!(
            spec(json!(["python>=3.10"])).unwrap().python.as_deref(),
            Some(">=3.10")
        );
        assert_eq!(spec(json!(["python"])).unwrap().python, None);
    }

    #[test]
    fn conda_only_dependencies_are_refused_all_at_once() {
        let e = spec(json!([
            "conda-forge::numpy",
            "numpy=1.26",
            "cudatoolkit",
            "six",
            "r-ggplot2",
            "scipy 1.11",
            "--index-url=http://x",
            "numpy=1.26=py311_0"
        ]))
        .unwrap_err()
        .to_string();
        for bad in [
            "conda-forge::numpy",
            "\"numpy=1.26\"",
            "cudatoolkit",
            "r-ggplot2",
            "scipy 1.11",
            "--index-url",
            "py311_0",
        ] {
            assert!(e.contains(bad), "{bad} missing from {e}");
        }
        assert!(!e.contains("\"six\""), "{e}");
        assert!(e.contains("uv"), "{e}");
        assert!(
            spec(json!(["OpenSSL"])).is_err(),
            "names are compared normalised"
        );
        assert!(spec(json!(["libgcc_ng"])).is_err());
        assert!(spec(json!([3])).is_err());
        assert!(spec(json!([{"conda": ["x"]}])).is_err());
        assert!(spec(json!(["python=3.11=h1"])).is_err());
    }

    #[test]
    fn the_cache_key_depends_on_the_normalised_spec_only() {
        let a = spec(json!(["six==1.16.0", "attrs"])).unwrap();
        let b = spec(json!([{"pip": ["attrs"]}, "six==1.16.0", "six==1.16.0"])).unwrap();
        assert_eq!(a.key("/usr/bin/python3"), b.key("/usr/bin/python3"));
        assert_ne!(a.key("/usr/bin/python3"), a.key("/opt/python3.12"));
        let c = spec(json!(["attrs"])).unwrap();
        assert_ne!(a.key("p"), c.key("p"));
        let d = spec(json!(["attrs", "python=3.11"])).unwrap();
        assert_ne!(c.key("p"), d.key("p"));
        assert_eq!(a.key("p").len(), 64);
    }

    #[test]
    fn the_install_list_has_the_kernel_and_hypha_rpc_unless_named() {
        let a = spec(json!(["six"])).unwrap();
        assert_eq!(
            a.install_list(),
            ["ipykernel", "jupyter_client", HYPHA_RPC, "six"]
        );
        let b = spec(json!(["hypha_rpc==0.20.0"])).unwrap();
        assert_eq!(
            b.install_list(),
            ["ipykernel", "jupyter_client", "hypha_rpc==0.20.0"]
        );
    }

    #[test]
    fn compile_fills_defaults_and_flattens() {
        let m = compile_manifest(from_json(
            &json!({"name": "x", "dependencies": "six", "channels": "bioconda"}),
        ))
        .unwrap();
        let j = to_json(&m);
        assert_eq!(j["entry_point"], json!("main.py"));
        assert_eq!(j["dependencies"], json!(["six"]));
        assert_eq!(j["channels"], json!(["bioconda"]));
        let m = compile_manifest(from_json(
            &json!({"entry_point": "app.py", "dependencies": ["a", {"pip": ["b"]}]}),
        ))
        .unwrap();
        let j = to_json(&m);
        assert_eq!(j["entry_point"], json!("app.py"));
        assert_eq!(j["dependencies"], json!(["a", "b"]));
        assert_eq!(j["channels"], json!(["conda-forge"]));
        let e = compile_manifest(from_json(&json!({"dependencies": ["mkl"]}))).unwrap_err();
        assert!(e.to_string().contains("mkl"), "{e}");
        assert!(compile_manifest(Value::from(1)).is_err());
    }
}
