//! Version resolution and naming (spec artifacts.md §1.6). A version's files live under
//! `v{index}/`, the position of its entry in `versions` (§1.7); these functions turn the
//! `version` argument of read, get_file, list_files, the HTTP routes and zip into that
//! index, and choose and check the names of new versions.

use crate::error::{ArtifactError, ArtifactResult};
use crate::model::{staging_intent, Version, INTENT_NEW_VERSION};
use serde_json::Value;

/// The `version` argument of a read-type call, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionArg {
    /// No version given (`None`).
    Default,
    /// `"latest"`.
    Latest,
    /// `"stage"` (or `stage=True`).
    Stage,
    /// Any other string: a version name.
    Name(String),
    /// An integer: an index into `versions`.
    Index(i64),
}

// === impl VersionArg ===

impl VersionArg {
    /// Parses the argument as a client sends it: absent or `null`, a string, or an
    /// integer.
    ///
    /// # Errors
    /// [`ArtifactError::InvalidArgument`] for any other JSON type (floats included).
    pub fn from_value(value: Option<&Value>) -> ArtifactResult<Self> {
        match value {
            None | Some(Value::Null) => Ok(VersionArg::Default),
            Some(Value::String(s)) => Ok(VersionArg::from_name(s)),
            Some(Value::Number(n)) => n.as_i64().map(VersionArg::Index).ok_or_else(|| {
                ArtifactError::invalid(format!("Invalid version {n}: expected an integer index."))
            }),
            Some(other) => Err(ArtifactError::invalid(format!(
                "Invalid version {other}: expected a version name or an integer index."
            ))),
        }
    }

    /// `"latest"`, `"stage"`, or a name.
    pub fn from_name(s: &str) -> Self {
        match s {
            "latest" => VersionArg::Latest,
            "stage" => VersionArg::Stage,
            name => VersionArg::Name(name.to_owned()),
        }
    }
}

/// The index that `arg` resolves to for an artifact with `versions` and `staging`, as
/// upstream's `_get_version_index` (§1.6). With `n = versions.len()`:
///
/// * [`VersionArg::Default`] → `max(0, n-1)`: a never-committed draft resolves to 0,
///   where its staged files are;
/// * [`VersionArg::Latest`] → `n-1`, which is `-1` when there are no versions;
/// * [`VersionArg::Stage`] → `n` (the next slot) while a staging session with intent
///   `new_version` is open, otherwise `max(0, n-1)` (an in-place edit, or no staging:
///   the last committed index);
/// * [`VersionArg::Name`] → the index of the first entry with that name;
/// * [`VersionArg::Index`] → that index, used directly.
///
/// # Errors
/// [`ArtifactError::InvalidArgument`] "Artifact version 'x' does not exist." for a
/// name no entry has, and for a negative index. Unlike upstream, a digit-only name
/// that some entry has resolves to that entry (upstream rejects every digit string).
pub fn version_index(
    versions: &[Version],
    staging: Option<&Value>,
    arg: &VersionArg,
) -> ArtifactResult<i64> {
    let n = versions.len() as i64;
    let last = (n - 1).max(0);
    match arg {
        VersionArg::Default => Ok(last),
        VersionArg::Latest => Ok(n - 1),
        VersionArg::Stage => {
            let open = staging.is_some_and(|s| !s.is_null());
            if open && staging_intent(staging) == Some(INTENT_NEW_VERSION) {
                Ok(n)
            } else {
                Ok(last)
            }
        }
        VersionArg::Name(name) => versions
            .iter()
            .position(|v| v.version == *name)
            .map(|i| i as i64)
            .ok_or_else(|| missing(name)),
        VersionArg::Index(i) if *i < 0 => Err(missing(&i.to_string())),
        VersionArg::Index(i) => Ok(*i),
    }
}

fn missing(name: &str) -> ArtifactError {
    ArtifactError::invalid(format!("Artifact version '{name}' does not exist."))
}

/// The default name of the next version: `"v"` + the number of versions (§1.6).
pub fn default_version_name(versions: &[Version]) -> String {
    format!("v{}", versions.len())
}

/// The name of a version about to be appended to `versions` (§1.6, §3.1, §3.4):
/// `requested`, or [`default_version_name`] when it is `None`, `"new"` or `"stage"`.
///
/// # Errors
/// [`ArtifactError::InvalidArgument`] when an existing entry already has the name, or
/// the name is empty.
pub fn new_version_name(versions: &[Version], requested: Option<&str>) -> ArtifactResult<String> {
    let name = match requested {
        None | Some("new") | Some("stage") => return Ok(default_version_name(versions)),
        Some(name) => name,
    };
    if name.is_empty() {
        return Err(ArtifactError::invalid("Version name must not be empty."));
    }
    if versions.iter().any(|v| v.version == name) {
        return Err(ArtifactError::invalid(format!(
            "Version '{name}' already exists."
        )));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn versions(names: &[&str]) -> Vec<Version> {
        names
            .iter()
            .map(|n| Version {
                version: (*n).into(),
                comment: None,
                created_at: 0,
            })
            .collect()
    }

    fn index(vs: &[Version], staging: Option<Value>, arg: VersionArg) -> ArtifactResult<i64> {
        version_index(vs, staging.as_ref(), &arg)
    }

    #[test]
    fn arguments_parse_from_json() {
        assert_eq!(VersionArg::from_value(None).unwrap(), VersionArg::Default);
        assert_eq!(
            VersionArg::from_value(Some(&Value::Null)).unwrap(),
            VersionArg::Default
        );
        assert_eq!(
            VersionArg::from_value(Some(&json!("latest"))).unwrap(),
            VersionArg::Latest
        );
        assert_eq!(
            VersionArg::from_value(Some(&json!("stage"))).unwrap(),
            VersionArg::Stage
        );
        assert_eq!(
            VersionArg::from_value(Some(&json!("v1"))).unwrap(),
            VersionArg::Name("v1".into())
        );
        assert_eq!(
            VersionArg::from_value(Some(&json!(2))).unwrap(),
            VersionArg::Index(2)
        );
        assert!(VersionArg::from_value(Some(&json!(1.5))).is_err());
        assert!(VersionArg::from_value(Some(&json!([1]))).is_err());
    }

    #[test]
    fn default_and_latest() {
        let none = versions(&[]);
        let three = versions(&["v0", "v1", "v2"]);
        assert_eq!(index(&none, None, VersionArg::Default).unwrap(), 0);
        assert_eq!(index(&three, None, VersionArg::Default).unwrap(), 2);
        assert_eq!(index(&none, None, VersionArg::Latest).unwrap(), -1);
        assert_eq!(index(&three, None, VersionArg::Latest).unwrap(), 2);
    }

    #[test]
    fn stage_depends_on_the_intent() {
        let none = versions(&[]);
        let two = versions(&["v0", "v1"]);
        let new = Some(json!({"files": [], "_intent": "new_version"}));
        let edit = Some(json!({"files": [], "_intent": "edit_version"}));
        assert_eq!(index(&none, new.clone(), VersionArg::Stage).unwrap(), 0);
        assert_eq!(index(&two, new, VersionArg::Stage).unwrap(), 2);
        assert_eq!(index(&two, edit, VersionArg::Stage).unwrap(), 1);
        assert_eq!(index(&two, None, VersionArg::Stage).unwrap(), 1);
        assert_eq!(index(&none, None, VersionArg::Stage).unwrap(), 0);
        let legacy = Some(json!([{"path": "a"}, {"_intent": "new_version"}]));
        assert_eq!(index(&two, legacy, VersionArg::Stage).unwrap(), 2);
    }

    #[test]
    fn names_and_indices() {
        let vs = versions(&["v0", "release", "v0-again", "7"]);
        assert_eq!(
            index(&vs, None, VersionArg::from_name("release")).unwrap(),
            1
        );
        assert_eq!(index(&vs, None, VersionArg::from_name("7")).unwrap(), 3);
        let err = index(&vs, None, VersionArg::from_name("nope")).unwrap_err();
        assert_eq!(err.to_string(), "Artifact version 'nope' does not exist.");
        assert!(index(&vs, None, VersionArg::from_name("2")).is_err());
        assert_eq!(index(&vs, None, VersionArg::Index(0)).unwrap(), 0);
        assert_eq!(index(&vs, None, VersionArg::Index(9)).unwrap(), 9);
        assert!(index(&vs, None, VersionArg::Index(-1)).is_err());
    }

    #[test]
    fn new_names_default_to_v_len_and_must_be_unique() {
        let vs = versions(&["v0", "v1"]);
        assert_eq!(default_version_name(&[]), "v0");
        assert_eq!(new_version_name(&vs, None).unwrap(), "v2");
        assert_eq!(new_version_name(&vs, Some("new")).unwrap(), "v2");
        assert_eq!(new_version_name(&vs, Some("stage")).unwrap(), "v2");
        assert_eq!(new_version_name(&vs, Some("gold")).unwrap(), "gold");
        let err = new_version_name(&vs, Some("v1")).unwrap_err();
        assert!(matches!(err, ArtifactError::InvalidArgument(_)));
        assert!(err.to_string().contains("already exists"), "{err}");
        assert!(new_version_name(&vs, Some("")).is_err());
    }
}
