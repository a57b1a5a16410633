use super::*;

fn file(path: &str, content: &str) -> File {
    File {
        path: path.into(),
        content: content.into(),
        format: "text".into(),
    }
}

fn index(files: &[File]) -> &str {
    &files
        .iter()
        .find(|f| f.path == "index.html")
        .expect("index.html")
        .content
}

#[test]
fn a_script_becomes_a_window_page_that_connects_with_the_servers_client() {
    let manifest = json!({"name": "Calc <1>", "type": "window", "entry_point": "source"});
    let (patch, files) = compile(
        &manifest,
        &[file("source", "api.export({add(a, b) { return a + b; }});")],
        "http://127.0.0.1:9527/",
    )
    .unwrap();
    assert_eq!(patch["entry_point"], "index.html");
    assert_eq!(
        files.len(),
        1,
        "the script lives in the page now: {files:?}"
    );
    let html = index(&files);
    assert!(html.contains("<title>Calc &lt;1&gt;</title>"), "{html}");
    assert!(html.contains("api.export({add(a, b) { return a + b; }});"));
    assert!(html.contains("/assets/hypha-rpc-websocket.mjs"));
    assert!(
        html.contains(r#""server_url":"http://127.0.0.1:9527""#),
        "{html}"
    );
    assert!(html.contains("__rhizoAppState"), "the start-up state");
    assert!(
        !html.contains("{{") && !html.contains("{%"),
        "fully rendered"
    );
}

#[test]
fn a_script_cannot_close_the_element_it_is_inlined_in() {
    let manifest = json!({"type": "window", "entry_point": "main.js"});
    let src = r#"const s = "</script><b>x</b>"; api.export({});"#;
    let (_, files) = compile(&manifest, &[file("main.js", src)], "http://h").unwrap();
    let html = index(&files);
    assert!(html.contains(r#""<\/script><b>x</b>""#), "{html}");
    assert_eq!(
        html.matches("</script>").count(),
        2,
        "the state and app scripts"
    );
    // The web-worker template passes the script as a JSON string: unchanged.
    let manifest = json!({"type": "web-worker", "entry_point": "main.js"});
    let (_, files) = compile(&manifest, &[file("main.js", src)], "http://h").unwrap();
    let html = index(&files);
    assert!(
        html.contains(r#"\"\u003c/script\u003e\u003cb\u003ex\u003c/b\u003e\""#),
        "{html}"
    );
}

#[test]
fn worker_and_python_types_get_their_templates_and_requirements() {
    let manifest =
        json!({"type": "web-python", "entry_point": "main.py", "requirements": ["numpy"]});
    let (_, files) = compile(&manifest, &[file("main.py", "print(1)")], "http://h").unwrap();
    let html = index(&files);
    assert!(
        html.contains("loadPyodide") && html.contains(r#"["numpy"]"#),
        "{html}"
    );
    assert!(html.contains(r#"print(1)"#));
    let manifest = json!({"type": "web-worker", "entry_point": "main.js"});
    let (_, files) = compile(&manifest, &[file("main.js", "x")], "http://h").unwrap();
    assert!(index(&files).contains("new Worker(url, { type: \"module\""));
}

#[test]
fn a_plugin_source_gives_config_window_styles_and_links() {
    let src = r#"<config lang="yaml">
name: Greeter
requirements: ["https://cdn.example/x.css"]
</config>
<window><div id="g">Hi</div></window>
<style>#g { color: red; }</style>
<link rel="stylesheet" href="/local.css">
<script lang="javascript">api.export({});</script>"#;
    let manifest = json!({"type": "hypha", "entry_point": "index.imjoy.html"});
    let (patch, files) = compile(&manifest, &[file("index.imjoy.html", src)], "http://h").unwrap();
    assert_eq!(patch["name"], "Greeter");
    assert!(patch.get("type").is_none(), "the type is the manifest's");
    let html = index(&files);
    assert!(html.contains(r#"<div id="g">Hi</div>"#), "{html}");
    assert!(html.contains("<style>#g { color: red; }</style>"));
    assert!(
        // Attribute values are HTML-escaped (`/` as `&#x2f;`, which the browser decodes).
        html.contains(r#"<link href="&#x2f;local.css" rel="stylesheet">"#),
        "{html}"
    );
    assert!(html.contains("https://cdn.example/x.css"));
    assert!(html.contains("api.export({});"));
}

#[test]
fn an_installed_plugins_whole_source_still_gives_its_window() {
    // install split the plugin into main.js and kept the whole text as `source`.
    let whole = "<window><p id=w>W</p></window><script>api.export({});</script>";
    let manifest = json!({"type": "window", "entry_point": "main.js"});
    let (_, files) = compile(
        &manifest,
        &[file("main.js", "api.export({});"), file("source", whole)],
        "http://h",
    )
    .unwrap();
    assert!(index(&files).contains("<p id=w>W</p>"));
    assert!(files.iter().any(|f| f.path == "source"), "kept as a file");
}

#[test]
fn raw_html_passes_through_and_html_files_become_the_index() {
    let page = "<!DOCTYPE html><html><body>ready</body></html>";
    let manifest = json!({"type": "iframe", "entry_point": "index.html"});
    let (patch, files) = compile(&manifest, &[file("index.html", page)], "http://h").unwrap();
    assert_eq!(patch["entry_point"], "index.html");
    assert_eq!(index(&files), page);
    let manifest = json!({"type": "window", "entry_point": "missing.js"});
    let (patch, files) = compile(
        &manifest,
        &[file("app.html", page), file("data.json", "{}")],
        "http://h",
    )
    .unwrap();
    assert_eq!(patch["entry_point"], "index.html");
    assert_eq!(index(&files), page);
    assert_eq!(files.len(), 2);
}

#[test]
fn web_apps_need_a_url_and_other_types_are_refused() {
    let ok = json!({"type": "web-app", "entry_point": "https://example.org/app"});
    let (patch, files) = compile(&ok, &[file("x", "y")], "http://h").unwrap();
    assert_eq!(patch["entry_point"], "https://example.org/app");
    assert!(files.is_empty());
    let bad = json!({"type": "web-app", "entry_point": "index.html"});
    assert_eq!(
        compile(&bad, &[], "http://h").unwrap_err(),
        CompileError::WebAppUrl
    );
    let other = json!({"type": "python-eval", "entry_point": "main.py"});
    assert!(matches!(
        compile(&other, &[], "http://h"),
        Err(CompileError::Type(t)) if t == "python-eval"
    ));
    let none = json!({"type": "window", "entry_point": "main.js"});
    assert!(matches!(
        compile(&none, &[], "http://h"),
        Err(CompileError::NoEntry(_))
    ));
}

#[test]
fn bad_config_blocks_are_errors_and_attributes_parse_leniently() {
    let manifest = json!({"type": "window", "entry_point": "p.html"});
    let src = r#"<config lang="json">{not json</config><script>x</script>"#;
    assert!(matches!(
        compile(&manifest, &[file("p.html", src)], "http://h"),
        Err(CompileError::Config(_))
    ));
    let a = attributes(r#" rel="stylesheet" href='/a b.css' defer data-x=1 /"#);
    assert_eq!(a["rel"], "stylesheet");
    assert_eq!(a["href"], "/a b.css");
    assert_eq!(a["defer"], "");
    assert_eq!(a["data-x"], "1");
}
