//! Artifact ids and aliases: resolving an `artifact_id` argument (spec artifacts.md §1.2),
//! the alias rules and alias generation (§1.3), and the path safety of user-supplied
//! file paths (§1.7 `safe_join`).
//!
//! Sans-IO: generation asks its caller whether a candidate alias is taken (an async
//! `exists` callback that usually queries the store), so it is tested without a database.

use crate::error::{ArtifactError, ArtifactResult};
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{Map, Value};
use std::future::Future;

/// Longest alias accepted, in characters (§1.3).
pub const MAX_ALIAS_LEN: usize = 64;

/// Aliases that are never accepted: they have a meaning in HTTP routes (§1.3).
pub const RESERVED_ALIASES: [&str; 3] = ["-", "~", "_"];

/// How many candidate aliases generation tries before giving up (§1.3).
pub const MAX_ALIAS_ATTEMPTS: usize = 10;

/// What an `artifact_id` argument names, after [`resolve_artifact_id`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactRef {
    /// An internal id (a UUID): look the row up by primary key.
    Id(String),
    /// An alias in a workspace: look the row up by `(workspace, alias)`.
    Alias {
        /// The workspace id.
        workspace: String,
        /// The alias.
        alias: String,
    },
}

/// Resolves an `artifact_id` argument as upstream's `_validate_artifact_id` does (§1.2):
///
/// * a lowercase UUID (`8-4-4-4-12` hex digits) → [`ArtifactRef::Id`];
/// * exactly one `/` → `workspace/alias`;
/// * no `/` → an alias in `current_workspace` (the caller's `context.ws`).
///
/// # Errors
/// [`ArtifactError::InvalidArgument`] for more than one `/`, and (stricter than
/// upstream, which would only fail the lookup) for an empty id, workspace or alias.
pub fn resolve_artifact_id(input: &str, current_workspace: &str) -> ArtifactResult<ArtifactRef> {
    if is_lowercase_uuid(input) {
        return Ok(ArtifactRef::Id(input.to_owned()));
    }
    let (workspace, alias) = match input.split_once('/') {
        Some((_, rest)) if rest.contains('/') => {
            return Err(ArtifactError::invalid(format!(
                "Invalid artifact id '{input}': expected an id, an alias or 'workspace/alias'."
            )))
        }
        Some((ws, alias)) => (ws, alias),
        None => (current_workspace, input),
    };
    if workspace.is_empty() || alias.is_empty() {
        return Err(ArtifactError::invalid(format!(
            "Invalid artifact id '{input}': the workspace and alias must not be empty."
        )));
    }
    Ok(ArtifactRef::Alias {
        workspace: workspace.to_owned(),
        alias: alias.to_owned(),
    })
}

/// Whether `s` is a UUID in the lowercase hyphenated form (the form of internal ids).
pub fn is_lowercase_uuid(s: &str) -> bool {
    uuid_shape(s, |c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// Whether `s` looks like a UUID in any letter case: such aliases are rejected (§1.3).
fn looks_like_uuid(s: &str) -> bool {
    uuid_shape(s, |c| c.is_ascii_hexdigit())
}

fn uuid_shape(s: &str, hex: impl Fn(char) -> bool) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == GROUPS.len()
        && parts
            .iter()
            .zip(GROUPS)
            .all(|(p, n)| p.len() == n && p.chars().all(&hex))
}

/// Splits an alias argument given as `workspace/alias` (§1.3). Returns the workspace part
/// (if there was one) and the alias. An explicit `workspace` argument must equal the part.
///
/// # Errors
/// [`ArtifactError::InvalidArgument`] for more than one `/`, an empty part, or a
/// workspace part that differs from `workspace`.
pub fn split_alias<'a>(
    alias: &'a str,
    workspace: Option<&str>,
) -> ArtifactResult<(Option<&'a str>, &'a str)> {
    let Some((ws, name)) = alias.split_once('/') else {
        return Ok((None, alias));
    };
    if name.contains('/') || ws.is_empty() || name.is_empty() {
        return Err(ArtifactError::invalid(format!(
            "Invalid alias '{alias}': expected 'alias' or 'workspace/alias'."
        )));
    }
    if let Some(explicit) = workspace.filter(|w| *w != ws) {
        return Err(ArtifactError::invalid(format!(
            "The workspace in the alias '{alias}' does not match the workspace '{explicit}'."
        )));
    }
    Ok((Some(ws), name))
}

/// Checks a final alias against the rules of §1.3: not empty, at most
/// [`MAX_ALIAS_LEN`] characters, none of [`RESERVED_ALIASES`], not UUID-shaped, and no
/// `/` (split it with [`split_alias`] first). Like upstream, the characters are not
/// otherwise restricted.
///
/// # Errors
/// [`ArtifactError::InvalidArgument`] naming the rule broken.
pub fn validate_alias(alias: &str) -> ArtifactResult<()> {
    if alias.is_empty() {
        return Err(ArtifactError::invalid("Alias must not be empty."));
    }
    if alias.chars().count() > MAX_ALIAS_LEN {
        return Err(ArtifactError::invalid(format!(
            "Alias '{alias}' is too long: at most {MAX_ALIAS_LEN} characters are allowed."
        )));
    }
    if RESERVED_ALIASES.contains(&alias) {
        return Err(ArtifactError::invalid(format!(
            "Alias '{alias}' is reserved and cannot be used."
        )));
    }
    if looks_like_uuid(alias) {
        return Err(ArtifactError::invalid(format!(
            "Alias '{alias}' should be a human readable string, not a UUID."
        )));
    }
    if alias.contains('/') {
        return Err(ArtifactError::invalid(format!(
            "Alias '{alias}' must not contain '/'."
        )));
    }
    Ok(())
}

/// Whether `alias` is a template (§1.3): it contains both `{` and `}`.
pub fn is_template(alias: &str) -> bool {
    alias.contains('{') && alias.contains('}')
}

/// What template placeholders are filled from (§1.3).
#[derive(Debug, Clone, Default)]
pub struct TemplateContext<'a> {
    /// The caller's user id, for `{user_id}`.
    pub user_id: &'a str,
    /// The parent collection's `config.id_parts` (name → list of values), if any.
    pub id_parts: Option<&'a Map<String, Value>>,
    /// The time for `{timestamp}`, unix seconds.
    pub now_unix: i64,
}

/// Fills each `{name}` of `template` (§1.3): `uuid` → a new UUIDv7, `timestamp` → unix
/// seconds (the docs say milliseconds, the code uses seconds; so does rhizo), `user_id`
/// → the caller, a key of the parent's `id_parts` → one of its values at random, and any
/// other name → a random UUIDv4. A `{` without a closing `}` is kept as text.
///
/// # Errors
/// [`ArtifactError::InvalidArgument`] for `{zenodo_id}` / `{zenodo_conceptrecid}`
/// (Zenodo publishing is not supported), and for an `id_parts` entry that is not a
/// non-empty list.
pub fn expand_template(template: &str, ctx: &TemplateContext<'_>) -> ArtifactResult<String> {
    let mut rng = rand::thread_rng();
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        out.push_str(&rest[..open]);
        let name = &rest[open + 1..close];
        match name {
            "uuid" => out.push_str(&uuid::Uuid::now_v7().to_string()),
            "timestamp" => out.push_str(&ctx.now_unix.to_string()),
            "user_id" => out.push_str(ctx.user_id),
            "zenodo_id" | "zenodo_conceptrecid" => {
                return Err(ArtifactError::invalid(format!(
                    "The alias placeholder '{{{name}}}' needs Zenodo publishing, which this server does not support."
                )))
            }
            _ => match ctx.id_parts.and_then(|parts| parts.get(name)) {
                Some(pool) => out.push_str(&pick(name, pool, &mut rng)?),
                None => out.push_str(&uuid::Uuid::new_v4().to_string()),
            },
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn pick(name: &str, pool: &Value, rng: &mut impl Rng) -> ArtifactResult<String> {
    let chosen = pool.as_array().and_then(|values| values.choose(rng));
    match chosen {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
        None => Err(ArtifactError::invalid(format!(
            "config.id_parts['{name}'] must be a non-empty list of values."
        ))),
    }
}

const ADJECTIVES: [&str; 24] = [
    "brave", "calm", "clever", "eager", "fancy", "gentle", "happy", "jolly", "kind", "lively",
    "merry", "noble", "proud", "quick", "quiet", "rapid", "shiny", "silly", "swift", "tidy",
    "vivid", "warm", "wise", "zesty",
];
const NOUNS: [&str; 24] = [
    "ant", "bear", "bee", "cat", "crow", "deer", "dove", "duck", "eel", "fox", "frog", "goat",
    "hawk", "lion", "lynx", "mole", "moth", "newt", "otter", "owl", "panda", "seal", "swan",
    "wolf",
];
const VERBS: [&str; 24] = [
    "builds", "climbs", "dances", "digs", "dreams", "drifts", "flies", "glows", "grows", "hums",
    "jumps", "laughs", "leaps", "nods", "paints", "plays", "reads", "rests", "roams", "runs",
    "sings", "swims", "waits", "walks",
];
const ADVERBS: [&str; 24] = [
    "boldly", "briskly", "calmly", "deftly", "eagerly", "gently", "gladly", "happily", "kindly",
    "lightly", "loudly", "madly", "neatly", "openly", "politely", "quickly", "quietly", "rarely",
    "slowly", "softly", "swiftly", "warmly", "wildly", "wisely",
];

/// A random human-readable alias, adjective-noun-verb-adverb joined with `-`
/// (e.g. `brave-owl-sings-loudly`; §1.3). About 330 000 combinations.
pub fn random_alias() -> String {
    let mut rng = rand::thread_rng();
    let mut word = |list: &[&'static str]| list[rng.gen_range(0..list.len())];
    format!(
        "{}-{}-{}-{}",
        word(&ADJECTIVES),
        word(&NOUNS),
        word(&VERBS),
        word(&ADVERBS)
    )
}

/// An alias for a new artifact (§1.3): from `template` when it is one ([`is_template`],
/// filled by [`expand_template`]), otherwise a [`random_alias`]. Each candidate is checked
/// with [`validate_alias`] and then passed to `exists`, which answers whether the
/// workspace already has it; the first free one is returned, after at most
/// [`MAX_ALIAS_ATTEMPTS`] candidates. Pass `None` when the client gave no alias; an alias
/// that is not a template is not generated but checked directly by the caller.
///
/// # Errors
/// Those of [`expand_template`] and [`validate_alias`], those `exists` returns, and
/// [`ArtifactError::InvalidArgument`] when every candidate was taken.
pub async fn generate_alias<F, Fut>(
    template: Option<&str>,
    ctx: &TemplateContext<'_>,
    mut exists: F,
) -> ArtifactResult<String>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = ArtifactResult<bool>>,
{
    for _ in 0..MAX_ALIAS_ATTEMPTS {
        let candidate = match template {
            Some(t) if is_template(t) => expand_template(t, ctx)?,
            _ => random_alias(),
        };
        validate_alias(&candidate)?;
        if !exists(candidate.clone()).await? {
            return Ok(candidate);
        }
    }
    Err(ArtifactError::invalid(format!(
        "Could not generate a unique alias after {MAX_ALIAS_ATTEMPTS} attempts{}.",
        template.map_or(String::new(), |t| format!(" from the template '{t}'"))
    )))
}

/// `base` and the user-supplied relative `path` joined with `/`, for object keys and
/// directory paths (§1.7). An empty `path` gives `base`.
///
/// # Errors
/// [`ArtifactError::InvalidArgument`] when `path` is absolute, contains a backslash or a
/// NUL, has an empty segment (`a//b`, a trailing `/`), or a `.` or `..` segment: such a
/// path could leave `base` or name one object in two ways.
pub fn safe_join(base: &str, path: &str) -> ArtifactResult<String> {
    let base = base.trim_end_matches('/');
    if path.is_empty() {
        return Ok(base.to_owned());
    }
    let bad = |why: &str| {
        Err(ArtifactError::invalid(format!(
            "Invalid file path '{path}': {why}."
        )))
    };
    if path.starts_with('/') {
        return bad("absolute paths are not allowed");
    }
    if path.contains('\\') {
        return bad("backslashes are not allowed");
    }
    if path.contains('\0') {
        return bad("NUL characters are not allowed");
    }
    for segment in path.split('/') {
        match segment {
            "" => return bad("empty path segments are not allowed"),
            "." | ".." => return bad("'.' and '..' segments are not allowed"),
            _ => {}
        }
    }
    if base.is_empty() {
        Ok(path.to_owned())
    } else {
        Ok(format!("{base}/{path}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::cell::Cell;

    const UUID: &str = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn artifact_ids_resolve_like_upstream() {
        assert_eq!(
            resolve_artifact_id(UUID, "ws").unwrap(),
            ArtifactRef::Id(UUID.into())
        );
        assert_eq!(
            resolve_artifact_id("other/data", "ws").unwrap(),
            ArtifactRef::Alias {
                workspace: "other".into(),
                alias: "data".into()
            }
        );
        assert_eq!(
            resolve_artifact_id("data", "ws").unwrap(),
            ArtifactRef::Alias {
                workspace: "ws".into(),
                alias: "data".into()
            }
        );
        // An uppercase UUID is not an internal id: it is taken as an alias.
        let upper = UUID.to_uppercase();
        assert!(matches!(
            resolve_artifact_id(&upper, "ws").unwrap(),
            ArtifactRef::Alias { .. }
        ));
        for bad in ["a/b/c", "/x", "ws/", ""] {
            let err = resolve_artifact_id(bad, "ws").unwrap_err();
            assert!(matches!(err, ArtifactError::InvalidArgument(_)), "{bad}");
        }
    }

    #[test]
    fn alias_rules() {
        validate_alias("my-dataset").unwrap();
        validate_alias(&"é".repeat(64)).unwrap();
        for bad in ["", "-", "~", "_", UUID, &UUID.to_uppercase(), "a/b"] {
            assert!(validate_alias(bad).is_err(), "{bad:?}");
        }
        let err = validate_alias(&"a".repeat(65)).unwrap_err();
        assert!(err.to_string().contains("too long"), "{err}");
        let err = validate_alias(UUID).unwrap_err();
        assert!(err.to_string().contains("human readable"), "{err}");
    }

    #[test]
    fn workspace_prefixed_aliases_split_and_must_match() {
        assert_eq!(split_alias("data", Some("ws")).unwrap(), (None, "data"));
        assert_eq!(split_alias("ws/data", None).unwrap(), (Some("ws"), "data"));
        assert_eq!(
            split_alias("ws/data", Some("ws")).unwrap(),
            (Some("ws"), "data")
        );
        let err = split_alias("ws/data", Some("other")).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        assert!(split_alias("a/b/c", None).is_err());
        assert!(split_alias("/b", None).is_err());
    }

    #[test]
    fn templates_fill_every_placeholder_kind() {
        let parts = json!({"colors": ["red"], "animals": ["dog"], "n": [7]});
        let ctx = TemplateContext {
            user_id: "alice",
            id_parts: parts.as_object(),
            now_unix: 1_700_000_000,
        };
        assert_eq!(
            expand_template("{colors}-{animals}-{n}", &ctx).unwrap(),
            "red-dog-7"
        );
        assert_eq!(
            expand_template("run-{user_id}-{timestamp}", &ctx).unwrap(),
            "run-alice-1700000000"
        );
        let v7 = expand_template("x-{uuid}", &ctx).unwrap();
        let id = v7.strip_prefix("x-").unwrap();
        assert!(is_lowercase_uuid(id) && &id[14..15] == "7", "{v7}");
        let v4 = expand_template("{mystery}", &ctx).unwrap();
        assert!(is_lowercase_uuid(&v4) && &v4[14..15] == "4", "{v4}");
        // Unbalanced braces stay as text.
        assert_eq!(expand_template("a{b", &ctx).unwrap(), "a{b");
        assert!(expand_template("{zenodo_id}", &ctx).is_err());
        let empty = json!({"colors": []});
        let ctx = TemplateContext {
            id_parts: empty.as_object(),
            ..ctx
        };
        assert!(expand_template("{colors}", &ctx).is_err());
    }

    #[test]
    fn random_aliases_have_four_words() {
        let alias = random_alias();
        let words: Vec<&str> = alias.split('-').collect();
        assert_eq!(words.len(), 4, "{alias}");
        assert!(ADJECTIVES.contains(&words[0]) && ADVERBS.contains(&words[3]));
        validate_alias(&alias).unwrap();
    }

    #[test]
    fn generation_retries_collisions_then_gives_up() {
        let ctx = TemplateContext::default();
        let calls = Cell::new(0);
        // Taken three times, then free.
        let alias = block_on(generate_alias(None, &ctx, |_| {
            calls.set(calls.get() + 1);
            let taken = calls.get() <= 3;
            async move { Ok(taken) }
        }))
        .unwrap();
        assert_eq!(calls.get(), 4);
        assert_eq!(alias.split('-').count(), 4);

        let calls = Cell::new(0);
        let err = block_on(generate_alias(Some("fixed-{user_id}"), &ctx, |_| {
            calls.set(calls.get() + 1);
            async { Ok(true) }
        }))
        .unwrap_err();
        assert_eq!(calls.get(), MAX_ALIAS_ATTEMPTS);
        assert!(err.to_string().contains("fixed-{user_id}"), "{err}");

        // A template that expands to a UUID is rejected like a UUID alias.
        let err = block_on(generate_alias(Some("{uuid}"), &ctx, |_| async {
            Ok(false)
        }))
        .unwrap_err();
        assert!(err.to_string().contains("human readable"), "{err}");
        // Errors from the callback are passed on.
        let err = block_on(generate_alias(None, &ctx, |_| async {
            Err(ArtifactError::Permission("no".into()))
        }))
        .unwrap_err();
        assert!(matches!(err, ArtifactError::Permission(_)));
    }

    #[test]
    fn safe_join_rejects_escapes() {
        assert_eq!(
            safe_join("ws/artifacts/id/v0", "a/b.txt").unwrap(),
            "ws/artifacts/id/v0/a/b.txt"
        );
        assert_eq!(safe_join("base/", "x").unwrap(), "base/x");
        assert_eq!(safe_join("base", "").unwrap(), "base");
        assert_eq!(safe_join("", "x/y").unwrap(), "x/y");
        assert_eq!(safe_join("b", "..foo/bar..").unwrap(), "b/..foo/bar..");
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a\\b",
            "a//b",
            "a/",
            ".",
            "a/./b",
            "a\0b",
        ] {
            let err = safe_join("base", bad).unwrap_err();
            assert!(matches!(err, ArtifactError::InvalidArgument(_)), "{bad:?}");
        }
    }
}
