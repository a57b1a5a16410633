//! The plugin ("ImJoy/Hypha XML") source format (apps-workers.md §2.2, §1.4 step 8):
//! [`extract_files_from_source`] and its tag scanner.

use super::{json_type, AppFile, SourceError, SOURCE_TAGS};
use serde_json::Value;
use std::collections::BTreeMap;

/// The result of parsing a plugin source (§2.2, §1.4 step 8).
#[derive(Debug, Default)]
pub struct ExtractedSource {
    /// Each `<config>` and `<manifest>` body parsed (JSON or YAML) into an object, in source
    /// order; the caller merges them over the manifest, later ones winning.
    pub manifest_patches: Vec<Value>,
    /// `<script>` bodies as `main.py` / `main.js` / `main.txt` (by `lang`: python;
    /// javascript, js or no lang; anything else), then `<file name=… format=…>` bodies at
    /// `name`, in source order. A later script whose generated name is taken goes to
    /// [`ExtractedSource::others`] instead, so the entry point keeps the first script.
    pub files: Vec<AppFile>,
    /// Generated name of the first `<script>`: the app's `entry_point`.
    pub script_entry: Option<String>,
    /// `link`, `window`, `style`, `docs` and `attachment` tags (and shadowed scripts) as
    /// `(tag, attributes, trimmed body)`, in source order: browser-template material for the
    /// browser worker. Attribute names are lower case; values have entities decoded.
    pub others: Vec<(String, BTreeMap<String, String>, String)>,
    /// The text outside recognised tags (comments included), trimmed. Install discards it
    /// when a script was found, else stores it at the entry point.
    pub remaining: String,
}

/// An opening tag the scanner recognised.
struct OpenTag {
    /// Lower-case name, one of [`SOURCE_TAGS`].
    name: String,
    attrs: BTreeMap<String, String>,
    /// Byte offset just past the closing `>`.
    end: usize,
    /// `<tag … />`.
    self_closing: bool,
    /// 1-based line of the `<`.
    line: usize,
}

/// Splits a plugin source (§2.2) into manifest patches, files and template tags.
///
/// Recognised tags ([`SOURCE_TAGS`], names case-insensitive, attributes in double or single
/// quotes, bare, or without a value): `config` and `manifest` (`lang="json"` by default or
/// `"yaml"`/`"yml"`; an empty body is `{}`), `script`, `file` (`name`, `format` text | json |
/// base64, default text — unlike the reference, the format is honoured), and `link`,
/// `window`, `style`, `docs`, `attachment`. Bodies are kept verbatim, only trimmed, and are
/// never scanned for tags (a `<window>` may hold any HTML). `link` is an empty element;
/// `<tag/>` has an empty body. `<!-- … -->` comments are plain text. Any other markup is
/// plain text in [`ExtractedSource::remaining`]. A source whose trimmed text does not start
/// with `<` has no tags: all of it is `remaining`.
///
/// Errors: [`SourceError::UnclosedTag`], [`SourceError::MalformedTag`],
/// [`SourceError::UnsupportedLang`], [`SourceError::ConfigSyntax`],
/// [`SourceError::ConfigNotObject`], [`SourceError::FileTagWithoutName`] and
/// [`SourceError::FileTag`] (a body that does not suit its format, or an unknown format).
pub fn extract_files_from_source(source: &str) -> Result<ExtractedSource, SourceError> {
    let mut out = ExtractedSource::default();
    if !source.trim_start().starts_with('<') {
        out.remaining = source.trim().to_owned();
        return Ok(out);
    }
    let mut remaining = String::new();
    let mut pos = 0;
    while let Some(found) = source[pos..].find('<') {
        let lt = pos + found;
        if source[lt..].starts_with("<!--") {
            let end = source[lt + 4..]
                .find("-->")
                .map_or(source.len(), |e| lt + 4 + e + 3);
            remaining.push_str(&source[pos..end]);
            pos = end;
            continue;
        }
        let Some(open) = open_tag(source, lt)? else {
            remaining.push_str(&source[pos..=lt]);
            pos = lt + 1;
            continue;
        };
        remaining.push_str(&source[pos..lt]);
        let (body, next) = if open.self_closing {
            ("", open.end)
        } else if open.name == "link" {
            (
                "",
                skip_close_tag(source, open.end, "link").unwrap_or(open.end),
            )
        } else {
            match find_close_tag(source, open.end, &open.name) {
                Some((body_end, close_end)) => (&source[open.end..body_end], close_end),
                None => {
                    return Err(SourceError::UnclosedTag {
                        tag: open.name,
                        line: open.line,
                    })
                }
            }
        };
        out.take_tag(open, body.trim())?;
        pos = next;
    }
    remaining.push_str(&source[pos..]);
    out.remaining = remaining.trim().to_owned();
    Ok(out)
}

impl ExtractedSource {
    /// Files one recognised tag.
    fn take_tag(&mut self, open: OpenTag, body: &str) -> Result<(), SourceError> {
        match open.name.as_str() {
            "config" | "manifest" => {
                let patch = parse_config(&open, body)?;
                self.manifest_patches.push(patch);
            }
            "script" => {
                let lang = open
                    .attrs
                    .get("lang")
                    .map(|l| l.trim().to_ascii_lowercase())
                    .unwrap_or_default();
                let path = match lang.as_str() {
                    "python" => "main.py",
                    "" | "javascript" | "js" => "main.js",
                    _ => "main.txt",
                };
                if self.files.iter().any(|f| f.path == path) {
                    self.others.push((open.name, open.attrs, body.to_owned()));
                } else {
                    self.files.push(AppFile::text(path, body));
                    self.script_entry.get_or_insert_with(|| path.to_owned());
                }
            }
            "file" => {
                let name = open
                    .attrs
                    .get("name")
                    .filter(|n| !n.is_empty())
                    .ok_or(SourceError::FileTagWithoutName { line: open.line })?
                    .clone();
                let format = open
                    .attrs
                    .get("format")
                    .map(|f| f.trim().to_ascii_lowercase())
                    .filter(|f| !f.is_empty())
                    .unwrap_or_else(|| "text".to_owned());
                let file = AppFile {
                    path: name.clone(),
                    content: Value::String(body.to_owned()),
                    format,
                };
                // Check now, so the message points at the tag rather than at the upload.
                file.bytes().map_err(|e| SourceError::FileTag {
                    name,
                    line: open.line,
                    error: Box::new(e),
                })?;
                self.files.push(file);
            }
            _ => self.others.push((open.name, open.attrs, body.to_owned())),
        }
        Ok(())
    }
}

/// Parses a `<config>`/`<manifest>` body into a JSON object.
fn parse_config(open: &OpenTag, body: &str) -> Result<Value, SourceError> {
    let lang = open
        .attrs
        .get("lang")
        .map(|l| l.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let (lang, parsed) = match lang.as_str() {
        "" | "json" => (
            "json",
            if body.is_empty() {
                Ok(Value::Null)
            } else {
                serde_json::from_str::<Value>(body).map_err(|e| e.to_string())
            },
        ),
        "yaml" | "yml" => ("yaml", parse_yaml(body)),
        _ => {
            return Err(SourceError::UnsupportedLang {
                tag: open.name.clone(),
                line: open.line,
                lang,
            })
        }
    };
    match parsed {
        Ok(Value::Null) => Ok(Value::Object(serde_json::Map::new())),
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(other) => Err(SourceError::ConfigNotObject {
            tag: open.name.clone(),
            line: open.line,
            found: json_type(&other),
        }),
        Err(reason) => Err(SourceError::ConfigSyntax {
            tag: open.name.clone(),
            line: open.line,
            lang,
            reason,
        }),
    }
}

/// YAML → JSON value: merge keys (`<<: *anchor`) applied, non-string keys written as
/// strings, tags dropped.
fn parse_yaml(body: &str) -> Result<Value, String> {
    let mut yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(body).map_err(|e| e.to_string())?;
    yaml.apply_merge().map_err(|e| e.to_string())?;
    yaml_to_json(yaml)
}

fn yaml_to_json(yaml: serde_yaml_ng::Value) -> Result<Value, String> {
    use serde_yaml_ng::Value as Y;
    Ok(match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                // NaN and infinities have no JSON form: they become null.
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut object = serde_json::Map::with_capacity(map.len());
            for (key, value) in map {
                let key = match key {
                    Y::String(s) => s,
                    Y::Null => "null".to_owned(),
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    Y::Tagged(t) => match yaml_to_json(t.value)? {
                        Value::String(s) => s,
                        other => other.to_string(),
                    },
                    Y::Sequence(_) | Y::Mapping(_) => {
                        return Err("a mapping key must be a scalar, not a list or mapping".into())
                    }
                };
                object.insert(key, yaml_to_json(value)?);
            }
            Value::Object(object)
        }
        Y::Tagged(t) => yaml_to_json(t.value)?,
    })
}

/// 1-based line of a byte offset.
fn line_of(source: &str, offset: usize) -> usize {
    source.as_bytes()[..offset]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Reads a start tag at `lt` (the `<`). `Ok(None)` when it is not one of [`SOURCE_TAGS`];
/// an error when it is but the start tag is broken.
fn open_tag(source: &str, lt: usize) -> Result<Option<OpenTag>, SourceError> {
    let bytes = source.as_bytes();
    let name_start = lt + 1;
    let name_end = name_start
        + bytes[name_start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-' || **b == b'_')
            .count();
    let name = source[name_start..name_end].to_ascii_lowercase();
    if !SOURCE_TAGS.contains(&name.as_str()) {
        return Ok(None);
    }
    match bytes.get(name_end) {
        Some(b) if b.is_ascii_whitespace() || *b == b'>' || *b == b'/' => {}
        // `<configuration>`, `<script-x>` or `<config` at the very end: not our tag.
        _ => return Ok(None),
    }
    let line = line_of(source, lt);
    let malformed = |reason| SourceError::MalformedTag {
        tag: name.clone(),
        line,
        reason,
    };
    let mut attrs = BTreeMap::new();
    let mut i = name_end;
    loop {
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        match bytes.get(i) {
            None => return Err(malformed("the start tag has no closing `>`")),
            Some(b'>') => {
                return Ok(Some(OpenTag {
                    name,
                    attrs,
                    end: i + 1,
                    self_closing: false,
                    line,
                }))
            }
            Some(b'/') if bytes.get(i + 1) == Some(&b'>') => {
                return Ok(Some(OpenTag {
                    name,
                    attrs,
                    end: i + 2,
                    self_closing: true,
                    line,
                }))
            }
            Some(b'/') => {
                i += 1;
                continue;
            }
            Some(_) => {}
        }
        let key_start = i;
        while bytes
            .get(i)
            .is_some_and(|b| !b.is_ascii_whitespace() && !matches!(b, b'=' | b'>' | b'/'))
        {
            i += 1;
        }
        let key = source[key_start..i].to_ascii_lowercase();
        let mut j = i;
        while bytes.get(j).is_some_and(u8::is_ascii_whitespace) {
            j += 1;
        }
        let value = if bytes.get(j) == Some(&b'=') {
            j += 1;
            while bytes.get(j).is_some_and(u8::is_ascii_whitespace) {
                j += 1;
            }
            match bytes.get(j) {
                Some(&quote @ (b'"' | b'\'')) => {
                    let start = j + 1;
                    let len = source[start..]
                        .find(char::from(quote))
                        .ok_or_else(|| malformed("an attribute value's quote is never closed"))?;
                    i = start + len + 1;
                    decode_entities(&source[start..start + len])
                }
                _ => {
                    let start = j;
                    while bytes
                        .get(j)
                        .is_some_and(|b| !b.is_ascii_whitespace() && *b != b'>')
                    {
                        j += 1;
                    }
                    i = j;
                    decode_entities(&source[start..j])
                }
            }
        } else {
            String::new()
        };
        // As in HTML, the first of repeated attributes counts.
        attrs.entry(key).or_insert(value);
    }
}

/// Finds `</name>` (any case, optional whitespace before `>`) from `from`: returns where it
/// starts and the offset just past it.
fn find_close_tag(source: &str, from: usize, name: &str) -> Option<(usize, usize)> {
    let mut at = from;
    while let Some(found) = source[at..].find("</") {
        let start = at + found;
        if let Some(end) = skip_close_tag(source, start, name) {
            return Some((start, end));
        }
        at = start + 2;
    }
    None
}

/// When `</name>` (after optional whitespace) is at `at`, the offset just past it.
fn skip_close_tag(source: &str, at: usize, name: &str) -> Option<usize> {
    let bytes = source.as_bytes();
    let mut i = at;
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    if bytes.get(i..i + 2) != Some(b"</") {
        return None;
    }
    i += 2;
    let tag = bytes.get(i..i + name.len())?;
    if !tag.eq_ignore_ascii_case(name.as_bytes()) {
        return None;
    }
    i += name.len();
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    (bytes.get(i) == Some(&b'>')).then_some(i + 1)
}

/// Decodes the character references an attribute value may hold: `&amp; &lt; &gt; &quot;
/// &apos; &#NN; &#xHH;`. Anything else is kept as written.
pub(super) fn decode_entities(value: &str) -> String {
    if !value.contains('&') {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').and_then(|semi| {
            let entity = &rest[1..semi];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let number = entity.strip_prefix('#')?;
                    let code = match number.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => number.parse().ok()?,
                    };
                    char::from_u32(code)
                }
            }?;
            Some((c, semi + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}
