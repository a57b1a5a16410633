use super::plugin::decode_entities;
use super::*;
use serde_json::json;

fn file(path: &str, content: Value, format: &str) -> AppFile {
    AppFile {
        path: path.into(),
        content,
        format: format.into(),
    }
}

// --- AppFile::bytes ---

#[test]
fn text_file_is_utf8() {
    assert_eq!(
        AppFile::text("a.txt", "héllo").bytes().unwrap(),
        "héllo".as_bytes()
    );
    assert_eq!(
        file("a.txt", json!({"a": 1}), "text").bytes(),
        Err(SourceError::ContentType {
            path: "a.txt".into(),
            format: "text",
            expected: "string",
            found: "an object"
        })
    );
}

#[test]
fn json_file_serialises_with_indent_two() {
    let bytes = file("a.json", json!({"a": [1, 2]}), "json")
        .bytes()
        .unwrap();
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "{\n  \"a\": [\n    1,\n    2\n  ]\n}"
    );
    let list = file("l.json", json!([true]), "json").bytes().unwrap();
    assert_eq!(list, b"[\n  true\n]");
}

#[test]
fn json_string_must_parse_and_is_kept_as_given() {
    let given = "{ \"a\" :1 }";
    assert_eq!(
        file("a.json", json!(given), "json").bytes().unwrap(),
        given.as_bytes()
    );
    let err = file("a.json", json!("{oops"), "json").bytes().unwrap_err();
    assert!(matches!(&err, SourceError::InvalidJson { path, .. } if path == "a.json"));
    assert!(err.to_string().contains("not valid JSON"), "{err}");
}

#[test]
fn base64_plain_and_data_url() {
    assert_eq!(
        file("b", json!("aGVsbG8="), "base64").bytes().unwrap(),
        b"hello"
    );
    // Missing padding and line breaks are tolerated.
    assert_eq!(
        file("b", json!("aGVs\nbG8"), "base64").bytes().unwrap(),
        b"hello"
    );
    assert_eq!(
        file("p.png", json!("data:image/png;base64,aGVsbG8="), "base64")
            .bytes()
            .unwrap(),
        b"hello"
    );
    assert_eq!(
        file(
            "t",
            json!("data:text/plain;charset=utf-8;base64,aGk="),
            "base64"
        )
        .bytes()
        .unwrap(),
        b"hi"
    );
}

#[test]
fn base64_errors() {
    assert_eq!(
        file("t", json!("data:text/plain,hello"), "base64").bytes(),
        Err(SourceError::DataUrlNotBase64 { path: "t".into() })
    );
    assert_eq!(
        file("t", json!("data:no-comma"), "base64").bytes(),
        Err(SourceError::DataUrlNotBase64 { path: "t".into() })
    );
    assert!(matches!(
        file("t", json!("not base64!"), "base64").bytes(),
        Err(SourceError::InvalidBase64 { .. })
    ));
    assert!(matches!(
        file("t", json!(["x"]), "base64").bytes(),
        Err(SourceError::ContentType {
            found: "a list",
            ..
        })
    ));
}

#[test]
fn unknown_format_is_named() {
    let err = file("x.bin", json!("x"), "binary").bytes().unwrap_err();
    assert_eq!(
        err,
        SourceError::UnsupportedFormat {
            path: "x.bin".into(),
            format: "binary".into()
        }
    );
    assert!(err.to_string().contains("\"binary\""));
}

// --- normalise_files ---

#[test]
fn files_derive_path_from_name_and_default_format() {
    let files = normalise_files(&json!([
        {"name": "a.py", "content": "print(1)"},
        {"path": "dir/b.json", "content": {"k": 1}, "format": "json"},
        {"path": "p", "name": "ignored", "content": ""},
    ]))
    .unwrap();
    assert_eq!(
        files,
        vec![
            AppFile::text("a.py", "print(1)"),
            file("dir/b.json", json!({"k": 1}), "json"),
            AppFile::text("p", ""),
        ]
    );
    assert_eq!(file_name("dir/b.json"), "b.json");
    assert_eq!(file_name("b.json"), "b.json");
    assert_eq!(normalise_files(&Value::Null).unwrap(), vec![]);
    assert_eq!(normalise_files(&json!([])).unwrap(), vec![]);
}

#[test]
fn files_errors() {
    assert_eq!(
        normalise_files(&json!({"path": "a"})),
        Err(SourceError::FilesNotList { found: "an object" })
    );
    assert_eq!(
        normalise_files(&json!([{"path": "a", "content": ""}, "x"])),
        Err(SourceError::FileNotObject {
            index: 1,
            found: "a string"
        })
    );
    assert_eq!(
        normalise_files(&json!([{"content": "x"}])),
        Err(SourceError::FileWithoutPath { index: 0 })
    );
    assert_eq!(
        normalise_files(&json!([{"path": "", "name": "", "content": "x"}])),
        Err(SourceError::FileWithoutPath { index: 0 })
    );
    assert_eq!(
        normalise_files(&json!([{"path": 3, "content": "x"}])),
        Err(SourceError::FileField {
            index: 0,
            field: "path",
            expected: "a string",
            found: "a number"
        })
    );
    assert_eq!(
        normalise_files(&json!([{"path": "a", "content": "x", "format": true}])),
        Err(SourceError::FileField {
            index: 0,
            field: "format",
            expected: "a string",
            found: "a boolean"
        })
    );
    assert_eq!(
        normalise_files(&json!([{"name": "a"}])),
        Err(SourceError::FileWithoutContent { path: "a".into() })
    );
}

// --- hash, html, ids ---

#[test]
fn source_hash_is_a_sha256_multihash_in_base58() {
    // Expected values from Python: hashlib.sha256 + an inline base58btc encoder.
    assert_eq!(
        source_hash("hello world"),
        "QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L4"
    );
    assert_eq!(
        source_hash(""),
        "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n"
    );
    assert_eq!(
        source_hash("héllo <config>"),
        "Qmd9NQwaYhbfpGKXUm8A8fNZxpnjsgpiWJFogBRgYXYTD7"
    );
}

#[test]
fn base58_keeps_leading_zeros() {
    assert_eq!(base58(b""), "");
    assert_eq!(base58(b"\0"), "1");
    assert_eq!(base58(b"\0\0abc"), "11ZiCa");
}

#[test]
fn raw_html_detection() {
    assert!(is_raw_html("  <!DOCTYPE html><html></html>"));
    assert!(is_raw_html("\n<HTML lang=en>"));
    assert!(is_raw_html("\u{feff}<html>"));
    assert!(!is_raw_html("<config>{}</config>"));
    assert!(!is_raw_html("<!doctype xml>"));
    assert!(!is_raw_html("print('<html>')"));
    assert!(!is_raw_html(""));
}

#[test]
fn app_id_rule() {
    assert!(valid_app_id("my-app_2"));
    assert!(valid_app_id(""));
    assert!(!valid_app_id("my app"));
    assert!(!valid_app_id("ws/app"));
    assert!(!valid_app_id("app\n"));
    assert!(!valid_app_id("appé"));
}

// --- extract_files_from_source ---

#[test]
fn json_config_and_python_script() {
    let src = r#"
<config lang="json">
{"name": "Demo", "type": "web-python", "version": "0.1.0"}
</config>
<script lang="python">
from hypha_rpc import api
api.export({})
</script>
"#;
    let out = extract_files_from_source(src).unwrap();
    assert_eq!(
        out.manifest_patches,
        vec![json!({"name": "Demo", "type": "web-python", "version": "0.1.0"})]
    );
    assert_eq!(
        out.files,
        vec![AppFile::text(
            "main.py",
            "from hypha_rpc import api\napi.export({})"
        )]
    );
    assert_eq!(out.script_entry.as_deref(), Some("main.py"));
    assert_eq!(out.remaining, "");
}

#[test]
fn yaml_config_default_json_and_manifest_tag_in_order() {
    let src = "<CONFIG Lang='yaml'>\nname: Y\ntags: [a, b]\nversion: '1.0'\nbase: &b {x: 1}\nmerged:\n  <<: *b\n  y: 2\n1: one\n</CONFIG>\n<manifest>{\"name\": \"Z\"}</manifest>\n<config></config>";
    let out = extract_files_from_source(src).unwrap();
    assert_eq!(
        out.manifest_patches,
        vec![
            json!({"name": "Y", "tags": ["a", "b"], "version": "1.0", "base": {"x": 1},
                   "merged": {"x": 1, "y": 2}, "1": "one"}),
            json!({"name": "Z"}),
            json!({}),
        ]
    );
    assert!(out.files.is_empty());
    assert_eq!(out.script_entry, None);
}

#[test]
fn config_errors_name_the_tag() {
    let err = extract_files_from_source("<config lang=toml>a = 1</config>").unwrap_err();
    assert_eq!(
        err,
        SourceError::UnsupportedLang {
            tag: "config".into(),
            line: 1,
            lang: "toml".into()
        }
    );
    let err = extract_files_from_source("<docs>x</docs>\n<config>{\"a\": }</config>").unwrap_err();
    assert!(
        matches!(&err, SourceError::ConfigSyntax { tag, line: 2, lang: "json", .. } if tag == "config"),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .starts_with("<config> on line 2 is not valid json"));
    let err = extract_files_from_source("<manifest lang=\"yaml\">a: [1, 2</manifest>").unwrap_err();
    assert!(
        matches!(&err, SourceError::ConfigSyntax { tag, lang: "yaml", .. } if tag == "manifest"),
        "{err:?}"
    );
    assert_eq!(
        extract_files_from_source("<config>[1]</config>").unwrap_err(),
        SourceError::ConfigNotObject {
            tag: "config".into(),
            line: 1,
            found: "a list"
        }
    );
    assert_eq!(
        extract_files_from_source("<config lang=yaml>just text</config>").unwrap_err(),
        SourceError::ConfigNotObject {
            tag: "config".into(),
            line: 1,
            found: "a string"
        }
    );
}

#[test]
fn multiple_scripts_first_wins() {
    let src = "<script lang=\"javascript\">first()</script>\n\
               <script lang=\"python\">second()</script>\n\
               <script>third()</script>\n\
               <script lang=\"wat\">fourth</script>";
    let out = extract_files_from_source(src).unwrap();
    assert_eq!(out.script_entry.as_deref(), Some("main.js"));
    assert_eq!(
        out.files,
        vec![
            AppFile::text("main.js", "first()"),
            AppFile::text("main.py", "second()"),
            AppFile::text("main.txt", "fourth"),
        ]
    );
    // The third script would also be main.js: kept aside, the first one stays.
    assert_eq!(out.others.len(), 1);
    assert_eq!(out.others[0].0, "script");
    assert_eq!(out.others[0].2, "third()");
    let out = extract_files_from_source("<script lang=js>a</script>").unwrap();
    assert_eq!(out.script_entry.as_deref(), Some("main.js"));
}

#[test]
fn file_tags_honour_format() {
    let src = "<file name=\"data/x.json\" format=\"json\">\n{\"a\": 1}\n</file>\n\
               <file name='logo.png' format=base64>data:image/png;base64,aGk=</file>\n\
               <file name=\"notes.md\">  # Notes  </file>\n\
               <file name=\"empty.txt\"/>";
    let out = extract_files_from_source(src).unwrap();
    assert_eq!(
        out.files,
        vec![
            file("data/x.json", json!("{\"a\": 1}"), "json"),
            file("logo.png", json!("data:image/png;base64,aGk="), "base64"),
            AppFile::text("notes.md", "# Notes"),
            AppFile::text("empty.txt", ""),
        ]
    );
    assert_eq!(out.files[1].bytes().unwrap(), b"hi");
    assert_eq!(out.script_entry, None);
}

#[test]
fn file_tag_errors() {
    assert_eq!(
        extract_files_from_source("<file format=text>x</file>").unwrap_err(),
        SourceError::FileTagWithoutName { line: 1 }
    );
    let err = extract_files_from_source("<file name=a.json format=json>{x</file>").unwrap_err();
    assert!(
        matches!(&err, SourceError::FileTag { name, line: 1, error }
            if name == "a.json" && matches!(**error, SourceError::InvalidJson { .. })),
        "{err:?}"
    );
    let err = extract_files_from_source("\n<file name=a format=binary>x</file>").unwrap_err();
    assert_eq!(
        err.to_string(),
        "<file name=\"a\"> on line 2: file \"a\": unsupported format \"binary\" \
         (use text, json or base64)"
    );
    assert!(matches!(
        extract_files_from_source("<file name=a format=base64>@@@</file>").unwrap_err(),
        SourceError::FileTag { .. }
    ));
}

#[test]
fn template_tags_go_to_others_and_text_remains() {
    let src = "<docs lang=\"markdown\">\n# Title\n</docs>\nsome text\n\
               <window lang=\"html\"><div><script>inner()</script></div></window>\n\
               <style lang='css'>.a{}</style>\n\
               <link rel=\"stylesheet\" href=\"https://x/a.css?a=1&amp;b=2\">\n\
               <attachment name=\"data\">abc</attachment>\n\
               <div>not a tag of ours</div> <!-- <config>{}</config> --> tail";
    let out = extract_files_from_source(src).unwrap();
    let tags: Vec<&str> = out.others.iter().map(|o| o.0.as_str()).collect();
    assert_eq!(tags, ["docs", "window", "style", "link", "attachment"]);
    assert_eq!(out.others[0].2, "# Title");
    assert_eq!(
        out.others[0].1.get("lang").map(String::as_str),
        Some("markdown")
    );
    // A window's body is raw: the script inside is not extracted.
    assert_eq!(out.others[1].2, "<div><script>inner()</script></div>");
    assert_eq!(
        out.others[3].1.get("href").map(String::as_str),
        Some("https://x/a.css?a=1&b=2")
    );
    assert_eq!(out.others[3].2, "");
    assert!(out.files.is_empty());
    assert!(out.manifest_patches.is_empty());
    assert_eq!(
        out.remaining,
        "some text\n\n\n\n\n<div>not a tag of ours</div> <!-- <config>{}</config> --> tail"
    );
}

#[test]
fn attributes_and_close_tags_are_lenient() {
    let src = "<Script  LANG = \"Python\" async data-x='a\"b'>x = '</scriptx>'\n</SCRIPT >";
    let out = extract_files_from_source(src).unwrap();
    assert_eq!(
        out.files,
        vec![AppFile::text("main.py", "x = '</scriptx>'")]
    );
    let out = extract_files_from_source("<link href=a.css></link><docs>d</docs>").unwrap();
    assert_eq!(out.others.len(), 2);
    assert_eq!(out.remaining, "");
    // Lookalike names are plain text.
    let out = extract_files_from_source("<configuration>x</configuration>").unwrap();
    assert_eq!(out.remaining, "<configuration>x</configuration>");
    assert!(out.manifest_patches.is_empty());
}

#[test]
fn broken_tags_are_errors() {
    assert_eq!(
        extract_files_from_source("<docs>a</docs>\n\n<script lang=python>print(1)").unwrap_err(),
        SourceError::UnclosedTag {
            tag: "script".into(),
            line: 3
        }
    );
    assert!(matches!(
        extract_files_from_source("<config lang=\"yaml>a: 1</config>").unwrap_err(),
        SourceError::MalformedTag { line: 1, .. }
    ));
    assert!(matches!(
        extract_files_from_source("<config lang=yaml").unwrap_err(),
        SourceError::MalformedTag { .. }
    ));
}

#[test]
fn non_tag_source_is_all_remaining() {
    let out = extract_files_from_source("  print('<config>{}</config>')  ").unwrap();
    assert_eq!(out.remaining, "print('<config>{}</config>')");
    assert!(out.manifest_patches.is_empty());
    let out = extract_files_from_source("").unwrap();
    assert_eq!(out.remaining, "");
}

#[test]
fn every_prefix_parses_or_errors_without_panicking() {
    let src = "<config lang='yaml'>name: é</config>\n<script lang=\"python\">x='ü'</script>\
               <file name=a format=base64>aGk=</file><link href=x><!-- c --><docs/>tail";
    for (cut, _) in src.char_indices().chain([(src.len(), ' ')]) {
        let _ = extract_files_from_source(&src[..cut]);
        let _ = is_raw_html(&src[..cut]);
    }
    let whole = extract_files_from_source(src).unwrap();
    assert_eq!(whole.files.len(), 2);
    assert_eq!(whole.others.len(), 2);
    assert_eq!(whole.remaining, "<!-- c -->tail");
}

#[test]
fn entities_in_attributes() {
    assert_eq!(
        decode_entities("a&amp;b&lt;&#65;&#x42;&unknown;&"),
        "a&b<AB&unknown;&"
    );
}
