//! App sources and files as `install` receives them (apps-workers.md §1.4 steps 3–8 and 11,
//! §2.2). Pure functions: no I/O, no clock.
//!
//! * [`AppFile`] — one file of an app, with the upload encoding of §1.4 step 11
//!   ([`AppFile::bytes`]: `text`, `json`, `base64`);
//! * [`normalise_files`] — the `files` argument of `install` (§1.4 step 5);
//! * [`source_hash`] — the multihash (sha2-256, base58btc) stored as `source_hash` (step 6);
//! * [`is_raw_html`] — step 7's "raw HTML" test;
//! * [`extract_files_from_source`] — the plugin ("ImJoy/Hypha XML") format of §2.2 split
//!   into manifest patches, files and the browser-template tags (step 8);
//! * [`valid_app_id`] — the user-supplied app id rule of step 3.
//!
//! Every error is a [`SourceError`] whose message names the file, tag or field at fault.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine as _};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The file formats install can upload (§1.4 step 11).
pub const FILE_FORMATS: [&str; 3] = ["text", "json", "base64"];

/// The tags the plugin parser recognises (§2.2); any other markup is plain text.
pub const SOURCE_TAGS: [&str; 9] = [
    "config",
    "script",
    "link",
    "window",
    "style",
    "docs",
    "attachment",
    "file",
    "manifest",
];

/// Standard base64 that, like Python's `b64decode`, accepts missing padding and non-zero
/// trailing bits. Whitespace is removed before decoding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Why a source or a file of an app cannot be installed. Each message says what to fix.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SourceError {
    /// The `files` argument is not a list.
    #[error("`files` must be a list of {{path, content, format}} objects, got {found}")]
    FilesNotList {
        /// JSON type of what was given.
        found: &'static str,
    },
    /// An item of `files` is not an object.
    #[error("`files[{index}]` must be an object {{path, content, format}}, got {found}")]
    FileNotObject {
        /// Position in the `files` list.
        index: usize,
        /// JSON type of the item.
        found: &'static str,
    },
    /// An item of `files` has neither `path` nor `name`.
    #[error("`files[{index}]` needs a `path` (or a `name`)")]
    FileWithoutPath {
        /// Position in the `files` list.
        index: usize,
    },
    /// A field of a `files` item has the wrong type.
    #[error("`files[{index}].{field}` must be {expected}, got {found}")]
    FileField {
        /// Position in the `files` list.
        index: usize,
        /// `path`, `name` or `format`.
        field: &'static str,
        /// What the field must be.
        expected: &'static str,
        /// JSON type of what was given.
        found: &'static str,
    },
    /// An item of `files` has no `content`.
    #[error("file \"{path}\" has no `content`")]
    FileWithoutContent {
        /// The file's path.
        path: String,
    },
    /// The file's format is none of [`FILE_FORMATS`].
    #[error("file \"{path}\": unsupported format \"{format}\" (use text, json or base64)")]
    UnsupportedFormat {
        /// The file's path.
        path: String,
        /// The format given.
        format: String,
    },
    /// The content's JSON type does not suit the format.
    #[error("file \"{path}\": format \"{format}\" needs {expected} content, got {found}")]
    ContentType {
        /// The file's path.
        path: String,
        /// The file's format.
        format: &'static str,
        /// What the content must be.
        expected: &'static str,
        /// JSON type of what was given.
        found: &'static str,
    },
    /// A `json` file given as a string that does not parse as JSON.
    #[error("file \"{path}\": content is not valid JSON: {reason}")]
    InvalidJson {
        /// The file's path.
        path: String,
        /// The parser's message (with line and column).
        reason: String,
    },
    /// A `base64` file whose content does not decode.
    #[error("file \"{path}\": content is not valid base64: {reason}")]
    InvalidBase64 {
        /// The file's path.
        path: String,
        /// The decoder's message.
        reason: String,
    },
    /// A `base64` file given as a `data:` URL that is not base64-encoded.
    #[error("file \"{path}\": a data URL must be base64-encoded (data:<mime>;base64,<data>)")]
    DataUrlNotBase64 {
        /// The file's path.
        path: String,
    },
    /// A recognised tag opened but never closed.
    #[error("<{tag}> on line {line} is never closed: add </{tag}>")]
    UnclosedTag {
        /// Tag name, lower case.
        tag: String,
        /// 1-based line of the opening `<`.
        line: usize,
    },
    /// A recognised start tag that does not end with `>` or has an unterminated quote.
    #[error("<{tag}> on line {line} is malformed: {reason}")]
    MalformedTag {
        /// Tag name, lower case.
        tag: String,
        /// 1-based line of the opening `<`.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// `<config>`/`<manifest>` with a `lang` other than json or yaml.
    #[error("<{tag}> on line {line}: unsupported lang \"{lang}\" (use json or yaml)")]
    UnsupportedLang {
        /// `config` or `manifest`.
        tag: String,
        /// 1-based line of the tag.
        line: usize,
        /// The `lang` attribute given.
        lang: String,
    },
    /// The body of `<config>`/`<manifest>` does not parse in its language.
    #[error("<{tag}> on line {line} is not valid {lang}: {reason}")]
    ConfigSyntax {
        /// `config` or `manifest`.
        tag: String,
        /// 1-based line of the tag.
        line: usize,
        /// `json` or `yaml`.
        lang: &'static str,
        /// The parser's message (with line and column inside the body).
        reason: String,
    },
    /// The body of `<config>`/`<manifest>` parses but is not a mapping.
    #[error("<{tag}> on line {line} must hold a mapping of manifest fields, got {found}")]
    ConfigNotObject {
        /// `config` or `manifest`.
        tag: String,
        /// 1-based line of the tag.
        line: usize,
        /// JSON type of what was parsed.
        found: &'static str,
    },
    /// A `<file>` tag without a `name` attribute.
    #[error("<file> on line {line} needs a name attribute: <file name=\"path\">")]
    FileTagWithoutName {
        /// 1-based line of the tag.
        line: usize,
    },
    /// A `<file>` tag whose body does not suit its `format`.
    #[error("<file name=\"{name}\"> on line {line}: {error}")]
    FileTag {
        /// The tag's `name` attribute.
        name: String,
        /// 1-based line of the tag.
        line: usize,
        /// What is wrong with the body (shown in this message, so not an error `source`).
        error: Box<SourceError>,
    },
}

/// Name of a JSON value's type, for error messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

// === impl AppFile ===

/// One file of an app as install receives or derives it (§1.4 steps 5, 8 and 11).
#[derive(Debug, Clone, PartialEq)]
pub struct AppFile {
    /// Path inside the app artifact, e.g. `main.py` or `assets/logo.png`. Not checked here:
    /// the artifact manager refuses paths that leave the artifact.
    pub path: String,
    /// A string; for `json` also an object or a list (any non-string JSON value).
    pub content: Value,
    /// How [`AppFile::bytes`] encodes `content`: one of [`FILE_FORMATS`].
    pub format: String,
}

impl AppFile {
    /// A `text` file.
    pub fn text(path: impl Into<String>, content: impl Into<String>) -> Self {
        AppFile {
            path: path.into(),
            content: Value::String(content.into()),
            format: "text".to_owned(),
        }
    }

    /// The bytes to upload (§1.4 step 11):
    /// * `text` — the UTF-8 bytes of a string;
    /// * `json` — an object or list (any non-string value) serialised with an indent of 2,
    ///   or a string that must parse as JSON and is stored as given;
    /// * `base64` — a string of plain base64 (whitespace ignored, padding optional) or a
    ///   `data:<mime>;base64,<data>` URL, decoded.
    ///
    /// Errors: [`SourceError::UnsupportedFormat`] for any other format,
    /// [`SourceError::ContentType`] when the content's type does not suit the format,
    /// [`SourceError::InvalidJson`], [`SourceError::InvalidBase64`] and
    /// [`SourceError::DataUrlNotBase64`].
    pub fn bytes(&self) -> Result<Vec<u8>, SourceError> {
        match self.format.as_str() {
            "text" => match &self.content {
                Value::String(text) => Ok(text.as_bytes().to_vec()),
                other => Err(self.content_type("text", "string", other)),
            },
            "json" => match &self.content {
                Value::String(text) => match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                    Ok(_) => Ok(text.as_bytes().to_vec()),
                    Err(e) => Err(SourceError::InvalidJson {
                        path: self.path.clone(),
                        reason: e.to_string(),
                    }),
                },
                other => Ok(serde_json::to_vec_pretty(other)
                    .expect("a serde_json::Value always serialises")),
            },
            "base64" => match &self.content {
                Value::String(text) => self.decode_base64(text),
                other => Err(self.content_type("base64", "string", other)),
            },
            other => Err(SourceError::UnsupportedFormat {
                path: self.path.clone(),
                format: other.to_owned(),
            }),
        }
    }

    fn content_type(
        &self,
        format: &'static str,
        expected: &'static str,
        found: &Value,
    ) -> SourceError {
        SourceError::ContentType {
            path: self.path.clone(),
            format,
            expected,
            found: json_type(found),
        }
    }

    fn decode_base64(&self, text: &str) -> Result<Vec<u8>, SourceError> {
        let text = text.trim();
        let data = match text.get(..5) {
            Some(scheme) if scheme.eq_ignore_ascii_case("data:") => {
                let (header, data) =
                    text.split_once(',')
                        .ok_or_else(|| SourceError::DataUrlNotBase64 {
                            path: self.path.clone(),
                        })?;
                let is_base64 = header
                    .rsplit(';')
                    .next()
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("base64"));
                if !is_base64 {
                    return Err(SourceError::DataUrlNotBase64 {
                        path: self.path.clone(),
                    });
                }
                data
            }
            _ => text,
        };
        let compact: Vec<u8> = data.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        BASE64
            .decode(compact)
            .map_err(|e| SourceError::InvalidBase64 {
                path: self.path.clone(),
                reason: e.to_string(),
            })
    }
}

/// The `files` argument of install (§1.4 step 5): a list of `{path | name, content,
/// format?}` objects. A missing `path` is taken from `name`; `name` itself is only the last
/// segment of `path` and is not kept. `format` defaults to `"text"` and is checked later, by
/// [`AppFile::bytes`]. `null` means no files.
///
/// Errors: [`SourceError::FilesNotList`], [`SourceError::FileNotObject`],
/// [`SourceError::FileWithoutPath`] (neither `path` nor `name`, or both empty),
/// [`SourceError::FileField`] (a non-string `path`, `name` or `format`),
/// [`SourceError::FileWithoutContent`].
pub fn normalise_files(files: &Value) -> Result<Vec<AppFile>, SourceError> {
    let items = match files {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => {
            return Err(SourceError::FilesNotList {
                found: json_type(other),
            })
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let Value::Object(map) = item else {
                return Err(SourceError::FileNotObject {
                    index,
                    found: json_type(item),
                });
            };
            let string_field = |field: &'static str| match map.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(SourceError::FileField {
                    index,
                    field,
                    expected: "a string",
                    found: json_type(other),
                }),
            };
            let path = string_field("path")?.filter(|p| !p.is_empty());
            let name = string_field("name")?.filter(|n| !n.is_empty());
            let path = path
                .or(name)
                .ok_or(SourceError::FileWithoutPath { index })?;
            let format = string_field("format")?.unwrap_or_else(|| "text".to_owned());
            let content = match map.get("content") {
                None => return Err(SourceError::FileWithoutContent { path }),
                Some(content) => content.clone(),
            };
            Ok(AppFile {
                path,
                content,
                format,
            })
        })
        .collect()
}

/// The last segment of a file path, the `name` of a file given only its `path`.
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

// === source hash ===

/// The bitcoin base58 alphabet (base58btc of multibase).
const BASE58_ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Base58btc encoding: each leading zero byte becomes `1`, the rest is the big-endian number
/// in base 58.
fn base58(bytes: &[u8]) -> String {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    // Little-endian base-58 digits of the number, grown as bytes are folded in.
    let mut digits: Vec<u8> = Vec::with_capacity(bytes.len() * 138 / 100 + 1);
    for &byte in &bytes[zeros..] {
        let mut carry = u32::from(byte);
        for digit in digits.iter_mut() {
            carry += u32::from(*digit) << 8;
            *digit = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut out = "1".repeat(zeros);
    out.extend(
        digits
            .iter()
            .rev()
            .map(|d| char::from(BASE58_ALPHABET[usize::from(*d)])),
    );
    out
}

/// The `source_hash` of §1.4 step 6: the multihash of the source's UTF-8 bytes with sha2-256
/// (code `0x12`, length `0x20`, digest), in base58btc. Always 46 characters starting `Qm`.
pub fn source_hash(source: &str) -> String {
    let mut multihash = Vec::with_capacity(34);
    multihash.extend_from_slice(&[0x12, 0x20]);
    multihash.extend_from_slice(&Sha256::digest(source.as_bytes()));
    base58(&multihash)
}

/// §1.4 step 7: whether a source is a whole HTML document — its text, trimmed (and without a
/// byte-order mark) and lower-cased, starts with `<!doctype html` or `<html`.
pub fn is_raw_html(source: &str) -> bool {
    let head: String = source
        .trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
        .chars()
        .take(14)
        .collect::<String>()
        .to_lowercase();
    head.starts_with("<!doctype html") || head.starts_with("<html")
}

/// §1.4 step 3: a user-supplied app id matches `^[a-zA-Z0-9-_]*$` (ASCII letters, digits,
/// `-`, `_`; the empty string passes, as with the regex).
pub fn valid_app_id(id: &str) -> bool {
    id.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

mod plugin;
pub use plugin::{extract_files_from_source, ExtractedSource};

#[cfg(test)]
mod tests;
