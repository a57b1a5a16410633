//! The artifact manager's RPC methods (spec artifacts.md §3) end to end over each store:
//! the in-memory rows and objects, SQLite with a local directory, and PostgreSQL (when a
//! server runs on 127.0.0.1:5432; under `CI` it must). The same scenario runs on each, so
//! a store that loses a column, a version or a permission fails here, not in a client.
//! The real-client view of the same methods is `tests/compat/test_artifacts.py`.

use rhizo_artifacts::{
    ArtifactManager, ArtifactOptions, ArtifactStore, LocalObjectStore, MemoryArtifactStore,
    MemoryObjectStore, ObjectStore, SqlArtifactStore,
};
use rhizo_control_plane::manager::Ctx;
use rhizo_control_plane::service::{ControlService, ServiceHost};
use rhizo_control_plane::workspaces::WorkspaceInfo;
use rhizo_control_plane::{ManagerError, ManagerResult};
use rhizo_protocol::user::{Permission, ScopeInfo, UserInfo};
use rhizo_protocol::value::{from_json, to_json};
use serde_json::{json, Value as Json};
use std::sync::Arc;

#[path = "support/postgres.rs"]
mod postgres;

/// The control plane as the manager sees it: every `ws-user-*` workspace is persistent,
/// `ws-temp` exists but is not.
struct Host;

impl ServiceHost for Host {
    fn caller(&self, _token: Option<&str>, _url_ws: &str) -> ManagerResult<Ctx> {
        Err(ManagerError::Permission("no HTTP in this test".into()))
    }
    fn workspace(&self, id: &str) -> Option<WorkspaceInfo> {
        match id {
            "ws-temp" => Some(WorkspaceInfo::new(id, "", false, vec![])),
            w if w.starts_with("ws-user-") => Some(WorkspaceInfo::new(id, "", true, vec![])),
            _ => None,
        }
    }
    fn public_base_url(&self) -> String {
        "http://rhizo.test".into()
    }
    fn local_base_url(&self) -> String {
        "http://127.0.0.1:1".into()
    }
    fn derive_key(&self, _purpose: &str) -> [u8; 32] {
        [3; 32]
    }
}

fn user(id: &str, ws: &str) -> Ctx {
    let mut scope = ScopeInfo {
        current_workspace: Some(ws.into()),
        ..Default::default()
    };
    scope.workspaces.insert(ws.into(), Permission::Admin);
    Ctx {
        ws: ws.into(),
        from: format!("{ws}/c-{id}"),
        cid: format!("c-{id}"),
        user: UserInfo {
            id: id.into(),
            roles: vec![],
            is_anonymous: false,
            scope,
            email: Some(format!("{id}@example.org")),
            parent: None,
            expires_at: None,
            current_workspace: Some(ws.into()),
        },
    }
}

/// Calls `function` with keyword arguments `kwargs`, like a hypha-rpc client.
async fn call(
    am: &ArtifactManager,
    ctx: &Ctx,
    function: &str,
    kwargs: Json,
) -> Result<Json, String> {
    let spec = am
        .functions()
        .iter()
        .find(|f| f.name == function)
        .unwrap_or_else(|| panic!("no function {function}"));
    let args = spec
        .params
        .iter()
        .map(|(name, _)| from_json(kwargs.get(*name).unwrap_or(&Json::Null)))
        .collect();
    am.call(ctx, function, args)
        .await
        .map(|v| to_json(&v))
        .map_err(|e| e.wire())
}

async fn ok(am: &ArtifactManager, ctx: &Ctx, function: &str, kwargs: Json) -> Json {
    call(am, ctx, function, kwargs.clone())
        .await
        .unwrap_or_else(|e| panic!("{function}({kwargs}) failed: {e}"))
}

async fn fails(am: &ArtifactManager, ctx: &Ctx, function: &str, kwargs: Json, text: &str) {
    match call(am, ctx, function, kwargs.clone()).await {
        Ok(v) => panic!("{function}({kwargs}) should fail with {text:?}, got {v}"),
        Err(e) => assert!(
            e.contains(text),
            "{function}({kwargs}): {e:?} lacks {text:?}"
        ),
    }
}

fn aliases(list: &Json) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|a| a["alias"].as_str().unwrap().to_owned())
        .collect()
}

async fn scenario(store: Arc<dyn ArtifactStore>, objects: Arc<dyn ObjectStore>) {
    let am = ArtifactManager::new(store, objects.clone(), ArtifactOptions::default());
    am.attach(Arc::new(Host));
    let alice = user("alice", "ws-user-alice");
    let bob = user("bob", "ws-user-bob");

    // A public collection and a staged dataset in it.
    let coll = ok(&am, &alice, "create", json!({"alias": "coll", "type": "collection", "manifest": {"name": "C"}, "config": {"permissions": {"*": "r"}}})).await;
    assert_eq!(coll["id"], "ws-user-alice/coll");
    assert_eq!(coll["config"]["permissions"]["alice"], "*");
    assert_eq!(coll["config"]["child_count"], 0);
    let ds = ok(&am, &alice, "create", json!({"alias": "ds", "parent_id": "coll", "manifest": {"name": "Data one", "tags": ["cells"]}, "version": "stage"})).await;
    assert_eq!(ds["staging"], json!([{"_intent": "new_version"}]));
    assert_eq!(ds["parent_id"], "ws-user-alice/coll");
    let url = ok(
        &am,
        &alice,
        "put_file",
        json!({"artifact_id": "ds", "file_path": "data/a.txt"}),
    )
    .await;
    let url = url.as_str().unwrap();
    assert!(
        url.starts_with("http://rhizo.test/s3/ws-user-alice/artifacts/"),
        "{url}"
    );
    // The URL was handed out but nothing uploaded: the commit is refused and names the file.
    fails(
        &am,
        &alice,
        "commit",
        json!({"artifact_id": "ds"}),
        "FileNotFoundError: File 'data/a.txt'",
    )
    .await;
    ok(
        &am,
        &alice,
        "write_file",
        json!({"artifact_id": "ds", "file_path": "data/a.txt", "content": "one"}),
    )
    .await;
    let ds = ok(
        &am,
        &alice,
        "commit",
        json!({"artifact_id": "ds", "comment": "first"}),
    )
    .await;
    assert_eq!(ds["versions"][0]["version"], "v0");
    assert_eq!(ds["file_count"], 1);
    assert_eq!(ds["staging"], Json::Null);

    // A second version holds only its own files; the first stays readable.
    ok(&am, &alice, "edit", json!({"artifact_id": "ds", "stage": true, "version": "new", "manifest": {"name": "Data two"}})).await;
    ok(
        &am,
        &alice,
        "write_file",
        json!({"artifact_id": "ds", "file_path": "b.txt", "content": "two"}),
    )
    .await;
    let ds = ok(&am, &alice, "commit", json!({"artifact_id": "ds"})).await;
    let names: Vec<&str> = ds["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["v0", "v1"]);
    let files = ok(&am, &alice, "list_files", json!({"artifact_id": "ds"})).await;
    assert_eq!(
        files,
        json!([{"type": "file", "name": "b.txt", "size": 3, "last_modified": files[0]["last_modified"]}])
    );
    let old = ok(
        &am,
        &alice,
        "read_file",
        json!({"artifact_id": "ds", "file_path": "data/a.txt", "version": "v0"}),
    )
    .await;
    assert_eq!(old, json!({"name": "a.txt", "content": "one"}));
    let v0 = ok(
        &am,
        &alice,
        "read",
        json!({"artifact_id": "ds", "version": "v0", "silent": true}),
    )
    .await;
    assert_eq!(v0["manifest"]["name"], "Data one");
    let now = ok(&am, &alice, "read", json!({"artifact_id": "ds"})).await;
    assert_eq!(now["manifest"]["name"], "Data two");
    assert_eq!(now["view_count"], 1.0);

    // Listing with filters, keywords and pages.
    ok(
        &am,
        &alice,
        "create",
        json!({"alias": "other", "parent_id": "coll", "manifest": {"name": "Zeta"}}),
    )
    .await;
    let all = ok(&am, &alice, "list", json!({"parent_id": "coll"})).await;
    assert_eq!(aliases(&all), ["ds", "other"]);
    let same = ok(&am, &alice, "list_children", json!({"parent_id": "coll"})).await;
    assert_eq!(aliases(&same), ["ds", "other"]);
    let hit = ok(
        &am,
        &alice,
        "list",
        json!({"parent_id": "coll", "filters": {"manifest": {"name": "data*"}}}),
    )
    .await;
    assert_eq!(aliases(&hit), ["ds"]);
    let hit = ok(
        &am,
        &alice,
        "list",
        json!({"parent_id": "coll", "keywords": ["zeta"]}),
    )
    .await;
    assert_eq!(aliases(&hit), ["other"]);
    let page = ok(&am, &alice, "list", json!({"parent_id": "coll", "limit": 1, "offset": 1, "pagination": true, "order_by": "id>"})).await;
    assert_eq!(
        (page["total"].clone(), aliases(&page["items"])),
        (json!(2), vec!["ds".to_owned()])
    );
    fails(
        &am,
        &alice,
        "list",
        json!({"parent_id": "coll", "filters": {"colour": "red"}}),
        "Invalid filter key",
    )
    .await;
    let roots = ok(&am, &alice, "list", json!({})).await;
    assert_eq!(aliases(&roots), ["coll"]);

    // Another user reads what `*: r` allows and nothing else.
    let seen = ok(
        &am,
        &bob,
        "read",
        json!({"artifact_id": "ws-user-alice/ds", "silent": true}),
    )
    .await;
    assert_eq!(seen["alias"], "ds");
    fails(
        &am,
        &bob,
        "put_file",
        json!({"artifact_id": "ws-user-alice/ds", "file_path": "x"}),
        "PermissionError",
    )
    .await;
    fails(
        &am,
        &bob,
        "create",
        json!({"alias": "mine", "workspace": "ws-user-alice", "manifest": {}}),
        "PermissionError",
    )
    .await;
    fails(
        &am,
        &bob,
        "delete",
        json!({"artifact_id": "ws-user-alice/ds"}),
        "PermissionError",
    )
    .await;
    let secret = ok(
        &am,
        &alice,
        "create",
        json!({"alias": "private", "manifest": {}}),
    )
    .await;
    assert_eq!(secret["config"]["permissions"], json!({"alice": "*"}));
    fails(
        &am,
        &bob,
        "read",
        json!({"artifact_id": "ws-user-alice/private"}),
        "PermissionError",
    )
    .await;

    // Bad input.
    fails(
        &am,
        &alice,
        "create",
        json!({"alias": "ds", "manifest": {}}),
        "FileExistsError",
    )
    .await;
    fails(
        &am,
        &alice,
        "create",
        json!({"alias": "_", "manifest": {}}),
        "ValueError",
    )
    .await;
    fails(
        &am,
        &alice,
        "create",
        json!({"alias": "0193a8c2-1111-7222-8333-444455556666", "manifest": {}}),
        "ValueError",
    )
    .await;
    fails(
        &am,
        &alice,
        "create",
        json!({"alias": "x".repeat(65), "manifest": {}}),
        "ValueError",
    )
    .await;
    fails(
        &am,
        &user("carol", "ws-temp"),
        "create",
        json!({"alias": "t", "manifest": {}}),
        "not persistent",
    )
    .await;
    fails(
        &am,
        &alice,
        "commit",
        json!({"artifact_id": "ds"}),
        "staging mode",
    )
    .await;
    fails(
        &am,
        &alice,
        "discard",
        json!({"artifact_id": "ds"}),
        "No staged changes",
    )
    .await;
    fails(
        &am,
        &alice,
        "put_file",
        json!({"artifact_id": "ds", "file_path": "a"}),
        "staging mode",
    )
    .await;
    ok(
        &am,
        &alice,
        "edit",
        json!({"artifact_id": "ds", "stage": true}),
    )
    .await;
    for bad in ["../x", "a/../../x", "/abs", "a\\b", "a//b"] {
        fails(
            &am,
            &alice,
            "put_file",
            json!({"artifact_id": "ds", "file_path": bad}),
            "Invalid file path",
        )
        .await;
    }
    fails(
        &am,
        &alice,
        "read",
        json!({"artifact_id": "ws-user-alice/none"}),
        "KeyError",
    )
    .await;
    fails(
        &am,
        &alice,
        "read",
        json!({"artifact_id": "ds", "version": "v9"}),
        "does not exist",
    )
    .await;
    // Discarding the in-place edit keeps the committed files.
    ok(
        &am,
        &alice,
        "write_file",
        json!({"artifact_id": "ds", "file_path": "b.txt", "content": "changed"}),
    )
    .await;
    ok(&am, &alice, "discard", json!({"artifact_id": "ds"})).await;
    let b = ok(
        &am,
        &alice,
        "read_file",
        json!({"artifact_id": "ds", "file_path": "b.txt"}),
    )
    .await;
    assert_eq!(b["content"], "two");

    // Only the latest version can be deleted (rhizo: folders are indices, §9.7).
    fails(
        &am,
        &alice,
        "delete",
        json!({"artifact_id": "ds", "version": "v0"}),
        "Only the latest version",
    )
    .await;

    // set_parent moves an artifact between collections and to the root; no cycles.
    ok(
        &am,
        &alice,
        "create",
        json!({"alias": "shelf", "type": "collection", "manifest": {}}),
    )
    .await;
    let moved = ok(
        &am,
        &alice,
        "set_parent",
        json!({"artifact_id": "other", "new_parent_id": "shelf"}),
    )
    .await;
    assert_eq!(moved["parent_id"], "ws-user-alice/shelf");
    assert_eq!(
        aliases(&ok(&am, &alice, "list", json!({"parent_id": "shelf"})).await),
        ["other"]
    );
    fails(
        &am,
        &alice,
        "set_parent",
        json!({"artifact_id": "shelf", "new_parent_id": "shelf"}),
        "cycle",
    )
    .await;
    let root = ok(&am, &alice, "set_parent", json!({"artifact_id": "other"})).await;
    assert_eq!(root["parent_id"], Json::Null);
    fails(
        &am,
        &bob,
        "set_parent",
        json!({"artifact_id": "ws-user-alice/other", "new_parent_id": "ws-user-alice/shelf"}),
        "PermissionError",
    )
    .await;

    // A duplicate copies the latest files and commits.
    let dup = ok(
        &am,
        &alice,
        "duplicate",
        json!({"source_artifact_id": "ds", "target_alias": "ds-copy"}),
    )
    .await;
    assert_eq!(dup["file_count"], 1);
    let copy = ok(
        &am,
        &alice,
        "read_file",
        json!({"artifact_id": "ds-copy", "file_path": "b.txt"}),
    )
    .await;
    assert_eq!(copy["content"], "two");

    // A collection with a schema refuses a child whose manifest does not match, at commit.
    ok(&am, &alice, "create", json!({"alias": "strict", "type": "collection", "manifest": {"name": "S"}, "config": {"collection_schema": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "size": {"type": "integer"}}}}})).await;
    ok(&am, &alice, "create", json!({"alias": "bad-child", "parent_id": "strict", "manifest": {"name": "x", "size": "big"}, "stage": true})).await;
    fails(
        &am,
        &alice,
        "commit",
        json!({"artifact_id": "bad-child"}),
        "ValidationError",
    )
    .await;
    ok(
        &am,
        &alice,
        "edit",
        json!({"artifact_id": "bad-child", "stage": true, "manifest": {"name": "x", "size": 3}}),
    )
    .await;
    let good = ok(&am, &alice, "commit", json!({"artifact_id": "bad-child"})).await;
    assert_eq!(good["versions"][0]["version"], "v0");
    ok(
        &am,
        &alice,
        "delete",
        json!({"artifact_id": "strict", "recursive": true}),
    )
    .await;

    // Deleting the collection recursively with its files removes the rows and objects.
    ok(
        &am,
        &alice,
        "delete",
        json!({"artifact_id": "coll", "recursive": true, "delete_files": true}),
    )
    .await;
    fails(
        &am,
        &alice,
        "read",
        json!({"artifact_id": "ds"}),
        "KeyError",
    )
    .await;
    fails(
        &am,
        &alice,
        "read",
        json!({"artifact_id": "coll"}),
        "KeyError",
    )
    .await;
    let left = objects
        .count_files(
            &format!("ws-user-alice/artifacts/{}", now["_id"].as_str().unwrap()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn in_memory() {
    scenario(
        Arc::new(MemoryArtifactStore::new()),
        Arc::new(MemoryObjectStore::new()),
    )
    .await;
}

#[tokio::test]
async fn sqlite_and_a_local_directory() {
    let dir = std::env::temp_dir().join(format!("rhizo-artifacts-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let uri = format!("sqlite://{}", dir.join("a.db").display());
    let store = SqlArtifactStore::connect(&uri).await.unwrap();
    scenario(
        Arc::new(store.clone()),
        Arc::new(LocalObjectStore::new(dir.join("objects"))),
    )
    .await;
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn postgres() {
    postgres::with_database("rhizo_artifacts_service", |uri| async move {
        let store = SqlArtifactStore::connect(&uri).await.unwrap();
        scenario(Arc::new(store.clone()), Arc::new(MemoryObjectStore::new())).await;
        store.close().await;
    })
    .await;
}
