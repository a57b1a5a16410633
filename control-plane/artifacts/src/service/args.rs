//! Reading the arguments of a call, bound by name to the function's parameters
//! (`FUNCTIONS` in `service.rs`): one JSON value per parameter, `null` when not given.

use crate::error::{ArtifactError, ArtifactResult};
use rmpv::Value;
use serde_json::Value as Json;

/// The bound arguments of one call, as JSON.
pub(crate) struct Args {
    function: &'static str,
    names: Vec<&'static str>,
    values: Vec<Json>,
}

impl Args {
    /// The arguments of `function` (one value per parameter of its spec, in order).
    pub fn new(function: &str, args: &[Value]) -> Self {
        let spec = super::FUNCTIONS.iter().find(|f| f.name == function);
        let names = spec
            .map(|f| f.params.iter().map(|(n, _)| *n).collect())
            .unwrap_or_default();
        Args {
            function: spec.map_or("", |f| f.name),
            names,
            values: args.iter().map(rhizo_protocol::value::to_json).collect(),
        }
    }

    /// Arguments of `function` built in the server (one service method calling another):
    /// the given `(name, value)` pairs, every other parameter `null`.
    pub fn from_pairs(function: &str, pairs: &[(&str, Option<Json>)]) -> Self {
        let spec = super::FUNCTIONS.iter().find(|f| f.name == function);
        let names: Vec<&'static str> = spec
            .map(|f| f.params.iter().map(|(n, _)| *n).collect())
            .unwrap_or_default();
        let values = names
            .iter()
            .map(|n| {
                pairs
                    .iter()
                    .find(|(k, _)| k == n)
                    .and_then(|(_, v)| v.clone())
                    .unwrap_or(Json::Null)
            })
            .collect();
        Args {
            function: spec.map_or("", |f| f.name),
            names,
            values,
        }
    }

    /// The value of `name`; `null` when absent.
    pub fn get(&self, name: &str) -> &Json {
        static NULL: Json = Json::Null;
        self.names
            .iter()
            .position(|n| *n == name)
            .and_then(|i| self.values.get(i))
            .unwrap_or(&NULL)
    }

    /// The value of `name` unless it is `null`.
    pub fn opt(&self, name: &str) -> Option<&Json> {
        Some(self.get(name)).filter(|v| !v.is_null())
    }

    /// An owned copy of [`Args::opt`].
    pub fn json(&self, name: &str) -> Option<Json> {
        self.opt(name).cloned()
    }

    fn wrong(&self, name: &str, expected: &str) -> ArtifactError {
        ArtifactError::invalid(format!(
            "Invalid argument '{name}' of {}: expected {expected}, got {}.",
            self.function,
            self.get(name)
        ))
    }

    /// A string argument, if given.
    ///
    /// # Errors
    /// [`ArtifactError::InvalidArgument`] when it is not a string.
    pub fn str(&self, name: &str) -> ArtifactResult<Option<&str>> {
        match self.opt(name) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong(name, "a string")),
        }
    }

    /// A required string argument.
    ///
    /// # Errors
    /// [`ArtifactError::InvalidArgument`] when missing or not a string.
    pub fn req_str(&self, name: &str) -> ArtifactResult<&str> {
        self.str(name)?.ok_or_else(|| {
            ArtifactError::invalid(format!("Missing argument '{name}' of {}.", self.function))
        })
    }

    /// A boolean argument, `default` when absent.
    ///
    /// # Errors
    /// [`ArtifactError::InvalidArgument`] when it is not a boolean.
    pub fn bool(&self, name: &str, default: bool) -> ArtifactResult<bool> {
        match self.opt(name) {
            None => Ok(default),
            Some(Json::Bool(b)) => Ok(*b),
            Some(_) => Err(self.wrong(name, "a boolean")),
        }
    }

    /// An optional boolean argument.
    pub fn opt_bool(&self, name: &str) -> ArtifactResult<Option<bool>> {
        match self.opt(name) {
            None => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong(name, "a boolean")),
        }
    }

    /// An integer argument, `default` when absent.
    ///
    /// # Errors
    /// [`ArtifactError::InvalidArgument`] when it is not an integer.
    pub fn int(&self, name: &str, default: i64) -> ArtifactResult<i64> {
        match self.opt(name) {
            None => Ok(default),
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .ok_or_else(|| self.wrong(name, "an integer")),
        }
    }

    /// A number argument, `default` when absent.
    ///
    /// # Errors
    /// [`ArtifactError::InvalidArgument`] when it is not a number.
    pub fn num(&self, name: &str, default: f64) -> ArtifactResult<f64> {
        match self.opt(name) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.wrong(name, "a number")),
        }
    }

    /// A `str | list[str]` argument (file paths): the strings, and whether a list was
    /// given (the result is then a dict).
    ///
    /// # Errors
    /// [`ArtifactError::InvalidArgument`] when missing, empty, or of another type.
    pub fn paths(&self, name: &str) -> ArtifactResult<(Vec<String>, bool)> {
        match self.opt(name) {
            Some(Json::String(s)) => Ok((vec![s.clone()], false)),
            Some(Json::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| self.wrong(name, "strings"))
                })
                .collect::<ArtifactResult<Vec<_>>>()
                .map(|v| (v, true)),
            Some(Json::Array(_)) => Err(ArtifactError::invalid(format!(
                "Invalid argument '{name}' of {}: the list of paths is empty.",
                self.function
            ))),
            _ => Err(self.wrong(name, "a path or a list of paths")),
        }
    }
}
