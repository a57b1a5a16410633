use super::*;
use rhizo_protocol::user::ScopeInfo;
use serde_json::json;

fn caller(id: &str) -> Caller {
    Caller {
        id: id.into(),
        effective_id: None,
        email: None,
        anonymous: false,
        current_workspace: "ws-home".into(),
        workspaces: BTreeMap::new(),
    }
}

fn anon() -> Caller {
    Caller {
        anonymous: true,
        ..caller("anonymouz-x")
    }
}

fn with_ws(mut c: Caller, ws: &str, p: Permission) -> Caller {
    c.workspaces.insert(ws.into(), p);
    c
}

fn subject<'a>(config: Option<&'a Value>, parent: Option<&'a Value>) -> Subject<'a> {
    Subject {
        config,
        parent_config: parent,
        workspace: "ws",
    }
}

fn perms(p: Value) -> Value {
    json!({ "permissions": p })
}

fn names(ops: &[Operation]) -> Vec<&'static str> {
    ops.iter().map(|o| o.as_str()).collect()
}

fn message(r: ArtifactResult<()>) -> String {
    match r {
        Err(ArtifactError::Permission(m)) => m,
        other => panic!("expected a PermissionError, got {other:?}"),
    }
}

#[test]
fn operation_names_round_trip() {
    assert_eq!(Operation::ALL.len(), 26);
    for op in Operation::ALL {
        assert_eq!(Operation::parse(op.as_str()), Some(op));
        assert_eq!(op.to_string(), op.as_str());
    }
    assert_eq!(
        Operation::parse("set_download_weight"),
        Some(Operation::SetDownloadWeight)
    );
    assert_eq!(Operation::parse("Read"), None);
    assert_eq!(Operation::parse("list_children"), None);
    let mut all: Vec<_> = Operation::ALL.iter().map(|o| o.as_str()).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 26);
}

#[test]
fn codes_expand_as_in_the_spec() {
    assert!(code_operations("n").is_empty());
    assert_eq!(names(code_operations("l")), ["list"]);
    assert_eq!(names(code_operations("l+")), ["list", "draft"]);
    assert_eq!(names(code_operations("lv")), ["list", "list_vectors"]);
    assert_eq!(
        names(code_operations("lv+")),
        ["list", "list_vectors", "draft", "attach", "add_vectors"]
    );
    assert_eq!(names(code_operations("lf")), ["list", "list_files"]);
    assert_eq!(
        names(code_operations("lf+")),
        ["list", "list_files", "draft", "attach", "put_file"]
    );
    let r = [
        "read",
        "get_file",
        "list_files",
        "list",
        "search_vectors",
        "get_vector",
    ];
    assert_eq!(names(code_operations("r")), r);
    let r_plus: Vec<_> = r
        .iter()
        .copied()
        .chain(["put_file", "draft", "attach", "add_vectors"])
        .collect();
    assert_eq!(names(code_operations("r+")), r_plus);
    let rw = [
        "read",
        "get_file",
        "get_vector",
        "search_vectors",
        "list_files",
        "list_vectors",
        "list",
        "edit",
        "commit",
        "put_file",
        "add_vectors",
        "remove_file",
        "remove_vectors",
        "discard_changes",
        "detach",
        "mutate",
    ];
    assert_eq!(names(code_operations("rw")), rw);
    let rw_plus: Vec<_> = rw
        .iter()
        .copied()
        .chain(["get_status", "draft", "attach"])
        .collect();
    assert_eq!(names(code_operations("rw+")), rw_plus);
    let star: Vec<_> = rw_plus
        .iter()
        .copied()
        .chain(["create", "reset_stats", "publish", "delete"])
        .collect();
    assert_eq!(names(code_operations("*")), star);

    // rd+ = rw + get_status + draft − commit, attach, detach, mutate.
    let mut rd: Vec<_> = names(code_operations("rd+"));
    let mut expected: Vec<_> = rw
        .iter()
        .copied()
        .filter(|o| !["commit", "attach", "detach", "mutate"].contains(o))
        .chain(["get_status", "draft"])
        .collect();
    rd.sort_unstable();
    expected.sort_unstable();
    assert_eq!(rd, expected);

    for unknown in ["", "R", "rwx", "admin", "a"] {
        assert!(code_operations(unknown).is_empty(), "{unknown}");
    }
}

#[test]
fn no_code_grants_secrets_or_weights() {
    for code in CODES {
        for op in [
            Operation::GetSecret,
            Operation::SetSecret,
            Operation::SetDownloadWeight,
        ] {
            assert!(!code_operations(code).contains(&op), "{code} grants {op}");
        }
    }
    // An explicit list can still name them.
    assert!(grants(&json!(["get_secret"]), Operation::GetSecret));
}

#[test]
fn lists_grant_exactly_what_they_name() {
    let v = json!(["read", "commit", "bogus", 7]);
    assert!(grants(&v, Operation::Read));
    assert!(grants(&v, Operation::Commit));
    assert!(!grants(&v, Operation::List));
    assert!(!grants(&json!(42), Operation::Read));
    assert!(!grants(&json!({"read": true}), Operation::Read));
    assert!(!grants(&Value::Null, Operation::Read));
}

#[test]
fn permissions_view_expands_codes_and_passes_lists() {
    let view = permissions_view(Some(&json!({
        "*": "l", "@": "n", "alice": ["read", "bogus", 1], "bob": "zzz", "carol": 5
    })));
    assert_eq!(
        Value::Object(view),
        json!({"*": ["list"], "@": [], "alice": ["read", "bogus"], "bob": [], "carol": []})
    );
    assert!(permissions_view(None).is_empty());
    assert!(permissions_view(Some(&json!("r"))).is_empty());
    let cfg = perms(json!({"u": "r"}));
    assert_eq!(
        permissions_view(config_permissions(Some(&cfg)))["u"],
        json!(r_names())
    );
}

fn r_names() -> Vec<&'static str> {
    names(code_operations("r"))
}

#[test]
fn principals_match_ids_effective_ids_and_emails() {
    let mut c = caller("child-token");
    c.effective_id = Some("alice".into());
    c.email = Some("alice@example.org".into());
    for key in ["child-token", "alice", "alice@example.org"] {
        assert!(check(&json!({ key: "r" }), &c, Operation::Read), "{key}");
        assert!(!check(&json!({ key: "r" }), &c, Operation::Edit), "{key}");
    }
    assert!(!check(&json!({"bob": "*"}), &c, Operation::Read));
    assert!(!check(&json!("r"), &c, Operation::Read));
    assert!(!check(&json!({}), &c, Operation::Read));
}

#[test]
fn at_sign_excludes_anonymous_but_star_does_not() {
    let p = json!({"@": "r"});
    assert!(check(&p, &caller("bob"), Operation::Read));
    assert!(!check(&p, &anon(), Operation::Read));
    let p = json!({"*": "l"});
    assert!(check(&p, &anon(), Operation::List));
    assert!(!check(&p, &anon(), Operation::Read));
}

#[test]
fn workspace_scoped_keys_need_the_current_workspace() {
    let mut c = caller("bob");
    c.email = Some("bob@x.org".into());
    c.current_workspace = "team".into();
    for key in ["team/*", "team/@", "team/bob", "team/bob@x.org"] {
        assert!(check(&json!({ key: "r" }), &c, Operation::Read), "{key}");
        // Another workspace's scoped key does not apply.
        let other = key.replacen("team", "other", 1);
        assert!(!check(&json!({ other: "r" }), &c, Operation::Read), "{key}");
    }
    let mut a = anon();
    a.current_workspace = "team".into();
    assert!(check(&json!({"team/*": "r"}), &a, Operation::Read));
    assert!(!check(&json!({"team/@": "r"}), &a, Operation::Read));
    // The effective id matches scoped keys too.
    let mut child = caller("tok");
    child.effective_id = Some("alice".into());
    child.current_workspace = "team".into();
    assert!(check(&json!({"team/alice": "rw"}), &child, Operation::Edit));
}

#[test]
fn there_is_no_deny_precedence() {
    // The reference quirk (§2.3, §9 item 2): "n" for alice does not take away what "*"
    // grants everyone.
    let p = json!({"*": "r", "alice": "n"});
    assert!(check(&p, &caller("alice"), Operation::Read));
    let p = json!({"@": "rw", "alice": "n", "team/alice": "n"});
    let mut alice = caller("alice");
    alice.current_workspace = "team".into();
    assert!(check(&p, &alice, Operation::Edit));
    // Grants add up across principals: first grant wins, whichever it is.
    let p = json!({"alice": "l", "*": ["read"]});
    assert!(check(&p, &caller("alice"), Operation::List));
    assert!(check(&p, &caller("alice"), Operation::Read));
}

#[test]
fn caller_from_user_matches_userinfo_permission() {
    let mut scope = ScopeInfo::default();
    scope.workspaces.insert("team".into(), Permission::Read);
    scope.workspaces.insert("lab".into(), Permission::Admin);
    let user = UserInfo {
        id: "tok".into(),
        roles: vec![],
        is_anonymous: false,
        scope,
        email: Some("a@x.org".into()),
        parent: Some("alice".into()),
        expires_at: None,
        current_workspace: None,
    };
    let c = Caller::from_user(&user, "team");
    assert_eq!(c.current_workspace, "team");
    assert_eq!(c.effective_id.as_deref(), Some("alice"));
    assert_eq!(c.owner_id(), "alice");
    assert_eq!(c.email.as_deref(), Some("a@x.org"));
    for ws in ["team", "lab", "ws-user-tok", "ws-user-alice", "elsewhere"] {
        assert_eq!(c.workspace_permission(ws), user.permission(ws), "{ws}");
    }

    // An explicit "*" grant wins over the parent rule, as in UserInfo::permission.
    let mut star = user.clone();
    star.scope.workspaces.insert("*".into(), Permission::Read);
    let c = Caller::from_user(&star, "team");
    for ws in ["team", "lab", "ws-user-tok", "ws-user-alice", "elsewhere"] {
        assert_eq!(c.workspace_permission(ws), star.permission(ws), "{ws}");
    }

    let root = Caller::from_user(&UserInfo::root(), "x");
    assert!(root.can("anything", Permission::Admin));
    assert_eq!(root.owner_id(), "root");
}

#[test]
fn read_type_ops_fall_back_to_the_parent_then_the_workspace() {
    let child = perms(json!({}));
    let parent = perms(json!({"*": "r"}));
    let s = subject(Some(&child), Some(&parent));
    authorize(&s, &anon(), Operation::Read).unwrap();
    authorize(&s, &anon(), Operation::GetFile).unwrap();
    // Write operations do not look at the parent.
    let m = message(authorize(&s, &anon(), Operation::Edit));
    assert_eq!(m, "User does not have permission 'edit' on the artifact.");
    // list_vectors is read-type but "r" does not grant it.
    let m = message(authorize(&s, &anon(), Operation::ListVectors));
    assert_eq!(
        m,
        "User does not have permission 'list_vectors' on the artifact."
    );
    // Workspace read passes every read-type operation, nothing more.
    let reader = with_ws(caller("bob"), "ws", Permission::Read);
    let bare = subject(None, None);
    for op in Operation::ALL {
        assert_eq!(
            authorize(&bare, &reader, op).is_ok(),
            op.is_read_type(),
            "{op}"
        );
    }
}

#[test]
fn write_ops_are_checked_on_the_artifact_only() {
    let child = perms(json!({"bob": "rw"}));
    let parent = perms(json!({"bob": "*"}));
    let s = subject(Some(&child), Some(&parent));
    let bob = caller("bob");
    for op in [Operation::Edit, Operation::Commit, Operation::PutFile] {
        authorize(&s, &bob, op).unwrap();
    }
    // "*" on the parent does not reach the child's delete.
    let m = message(authorize(&s, &bob, Operation::Delete));
    assert_eq!(m, "User does not have permission 'delete' on the artifact.");
    // get_secret is never granted by a code: only workspace admin.
    let owner = perms(json!({"bob": "*"}));
    let s2 = subject(Some(&owner), None);
    assert!(authorize(&s2, &bob, Operation::GetSecret).is_err());
    assert!(authorize(&s2, &bob, Operation::SetSecret).is_err());
    let rw = with_ws(caller("bob"), "ws", Permission::ReadWrite);
    authorize(&s2, &rw, Operation::SetSecret).unwrap();
    authorize(&s2, &rw, Operation::SetDownloadWeight).unwrap();
    assert!(authorize(&s2, &rw, Operation::GetSecret).is_err());
    let admin = with_ws(caller("bob"), "ws", Permission::Admin);
    authorize(&s2, &admin, Operation::GetSecret).unwrap();
}

#[test]
fn collection_ops_are_checked_on_the_parent() {
    let child = perms(json!({"bob": "*"}));
    let parent = perms(json!({"bob": "lf+"}));
    let s = subject(Some(&child), Some(&parent));
    let bob = caller("bob");
    authorize(&s, &bob, Operation::Draft).unwrap();
    authorize(&s, &bob, Operation::Attach).unwrap();
    // "*" on the child itself does not grant detach/mutate: the parent decides.
    let m = message(authorize(&s, &bob, Operation::Detach));
    assert_eq!(
        m,
        "User does not have permission 'detach' on the parent collection."
    );
    assert!(authorize(&s, &bob, Operation::Mutate).is_err());
    // Without a parent, only the workspace fallback remains.
    let root = subject(Some(&child), None);
    assert!(authorize(&root, &bob, Operation::Draft).is_err());
    let rw = with_ws(caller("bob"), "ws", Permission::ReadWrite);
    authorize(&root, &rw, Operation::Draft).unwrap();
    // mutate falls back to admin only.
    assert!(authorize(&root, &rw, Operation::Mutate).is_err());
}

#[test]
fn legacy_create_needs_draft_and_attach_on_the_parent() {
    let bob = caller("bob");
    let both = perms(json!({"bob": "lf+"}));
    authorize(&subject(None, Some(&both)), &bob, Operation::Create).unwrap();
    let draft_only = perms(json!({"bob": "l+"}));
    let m = message(authorize(
        &subject(None, Some(&draft_only)),
        &bob,
        Operation::Create,
    ));
    assert_eq!(
        m,
        "User does not have permission 'attach' on the parent collection."
    );
    let none = perms(json!({"bob": ["create"]}));
    let m = message(authorize(
        &subject(None, Some(&none)),
        &bob,
        Operation::Create,
    ));
    assert!(m.contains("'draft'"), "{m}");
    let rw = with_ws(caller("bob"), "ws", Permission::ReadWrite);
    authorize(&subject(None, Some(&none)), &rw, Operation::Create).unwrap();
}

#[test]
fn workspace_fallback_thresholds() {
    use Operation as O;
    for op in [
        O::Delete,
        O::ResetStats,
        O::Publish,
        O::GetSecret,
        O::Mutate,
    ] {
        assert_eq!(op.workspace_fallback(), Permission::Admin, "{op}");
    }
    for op in [
        O::Create,
        O::Draft,
        O::Attach,
        O::Detach,
        O::Edit,
        O::Commit,
        O::PutFile,
        O::RemoveFile,
        O::AddVectors,
        O::RemoveVectors,
        O::DiscardChanges,
        O::SetSecret,
        O::SetDownloadWeight,
        O::GetStatus,
    ] {
        assert_eq!(op.workspace_fallback(), Permission::ReadWrite, "{op}");
    }
    // Workspace owners can do everything.
    let admin = with_ws(caller("o"), "ws", Permission::Admin);
    let s = subject(None, Some(&Value::Null));
    for op in Operation::ALL {
        authorize(&s, &admin, op).unwrap();
    }
    // The fallback is looked up on the artifact's workspace, not the caller's.
    let elsewhere = with_ws(caller("o"), "ws-home", Permission::Admin);
    assert!(authorize(&s, &elsewhere, Operation::Read).is_err());
    // A "*" workspace grant covers every workspace.
    let everywhere = with_ws(caller("o"), "*", Permission::ReadWrite);
    authorize(&s, &everywhere, Operation::Edit).unwrap();
    assert!(authorize(&s, &everywhere, Operation::Delete).is_err());
}

#[test]
fn error_is_a_permission_error() {
    let e = authorize(&subject(None, None), &anon(), Operation::Read).unwrap_err();
    assert_eq!(e.status(), 403);
    assert_eq!(
        e.wire(),
        "PermissionError: User does not have permission 'read' on the artifact."
    );
}

#[test]
fn edit_gate_lists() {
    use Gate::{Op as G, Parent as P};
    use Operation as O;
    assert_eq!(edit_gates(true, false, true, true), [G(O::Edit)]);
    assert_eq!(
        edit_gates(false, false, false, true),
        [G(O::Edit), G(O::Commit)]
    );
    assert_eq!(
        edit_gates(false, false, true, false),
        [G(O::Edit), G(O::Commit)]
    );
    assert_eq!(
        edit_gates(false, false, true, true),
        [
            G(O::Edit),
            G(O::Commit),
            P {
                op: O::Mutate,
                fallback: Permission::Admin
            }
        ]
    );
    assert_eq!(
        edit_gates(true, true, true, true),
        [
            G(O::Edit),
            P {
                op: O::Commit,
                fallback: Permission::ReadWrite
            }
        ]
    );
    assert_eq!(edit_gates(false, true, false, true).len(), 2);
}

#[test]
fn direct_edit_of_a_committed_child_needs_mutate_on_the_parent() {
    let child = perms(json!({"bob": "*"}));
    let parent = perms(json!({"bob": "r"}));
    let s = subject(Some(&child), Some(&parent));
    let bob = caller("bob");
    enforce(&s, &bob, &edit_gates(true, false, true, true)).unwrap();
    let m = message(enforce(&s, &bob, &edit_gates(false, false, true, true)));
    assert_eq!(
        m,
        "User does not have permission 'mutate' on the parent collection."
    );
    // Workspace rw is not enough for the mutate gate; admin is.
    let rw = with_ws(caller("bob"), "ws", Permission::ReadWrite);
    assert!(enforce(&s, &rw, &edit_gates(false, false, true, true)).is_err());
    let admin = with_ws(caller("bob"), "ws", Permission::Admin);
    enforce(&s, &admin, &edit_gates(false, false, true, true)).unwrap();
    let mutating = perms(json!({"bob": "rw"}));
    let s = subject(Some(&child), Some(&mutating));
    enforce(&s, &bob, &edit_gates(false, false, true, true)).unwrap();
}

#[test]
fn commit_gates_first_commit_needs_attach() {
    use Gate::{Op as G, Parent as P};
    use Operation as O;
    assert_eq!(commit_gates(false, false), [G(O::Commit)]);
    assert_eq!(commit_gates(true, true), [G(O::Commit)]);
    assert_eq!(
        commit_gates(true, false),
        [
            G(O::Commit),
            P {
                op: O::Attach,
                fallback: Permission::ReadWrite
            }
        ]
    );
    let child = perms(json!({"bob": "rw"}));
    let parent = perms(json!({"bob": "l+"}));
    let s = subject(Some(&child), Some(&parent));
    let m = message(enforce(&s, &caller("bob"), &commit_gates(true, false)));
    assert_eq!(
        m,
        "User does not have permission 'attach' on the parent collection."
    );
    enforce(&s, &caller("bob"), &commit_gates(true, true)).unwrap();
    let rw = with_ws(caller("x"), "ws", Permission::ReadWrite);
    enforce(&s, &rw, &commit_gates(true, false)).unwrap();
}

#[test]
fn delete_gates_and_the_detach_rule() {
    use Gate::{Op as G, Parent as P};
    use Operation as O;
    let detach = P {
        op: O::Detach,
        fallback: Permission::Admin,
    };
    assert_eq!(delete_gates(true, true, false), [G(O::Delete), detach]);
    assert_eq!(delete_gates(true, true, true), [G(O::Delete)]);
    assert_eq!(delete_gates(true, false, false), [G(O::Delete)]);
    assert_eq!(delete_gates(false, true, false), [G(O::Delete)]);

    let child = perms(json!({"bob": "*"}));
    let parent = perms(json!({"bob": "r"}));
    let s = subject(Some(&child), Some(&parent));
    let bob = caller("bob");
    let m = message(authorize_delete(&s, &bob, None, true, false));
    assert_eq!(
        m,
        "User does not have permission 'detach' on the parent collection."
    );
    authorize_delete(&s, &bob, None, false, false).unwrap();
    let rw_parent = perms(json!({"bob": "rw"}));
    let s = subject(Some(&child), Some(&rw_parent));
    authorize_delete(&s, &bob, None, true, false).unwrap();
}

#[test]
fn recipients_may_delete_their_own_child() {
    let parent = json!({"private_children": true, "recipient_field": "to",
                        "recipient_can_delete": true, "permissions": {}});
    let mut carol = caller("carol");
    carol.email = Some("carol@x.org".into());
    let mine = json!({"to": "carol@x.org"});
    let theirs = json!({"to": "dave@x.org"});
    assert!(is_recipient(Some(&parent), Some(&mine), &carol));
    assert!(!is_recipient(Some(&parent), Some(&theirs), &carol));
    assert!(!is_recipient(Some(&parent), None, &carol));
    assert!(!is_recipient(Some(&parent), Some(&mine), &caller("carol")));
    let s = subject(None, Some(&parent));
    authorize_delete(&s, &carol, Some(&mine), true, false).unwrap();
    assert!(authorize_delete(&s, &carol, Some(&theirs), true, false).is_err());
    // Without recipient_can_delete, a recipient is only a recipient.
    let no_delete = json!({"private_children": true, "recipient_field": "to"});
    assert!(is_recipient(Some(&no_delete), Some(&mine), &carol));
    assert!(!recipient_may_delete(Some(&no_delete), Some(&mine), &carol));
    let s = subject(None, Some(&no_delete));
    assert!(authorize_delete(&s, &carol, Some(&mine), true, false).is_err());
    // Without private_children there are no recipients.
    let public = json!({"recipient_field": "to", "recipient_can_delete": true});
    assert!(!recipient_may_delete(Some(&public), Some(&mine), &carol));
}

#[test]
fn create_gates() {
    let bob = caller("bob");
    // Root artifact: workspace rw.
    let m = message(authorize_create(None, "ws", &bob, false));
    assert_eq!(
        m,
        "User does not have permission 'create' in the workspace 'ws'."
    );
    let rw = with_ws(caller("bob"), "ws", Permission::ReadWrite);
    authorize_create(None, "ws", &rw, false).unwrap();
    assert!(authorize_create(None, "other", &rw, true).is_err());

    // Under a parent: list, then draft (staged) or attach.
    let coll = perms(json!({"bob": "l+"}));
    let parent = subject(Some(&coll), None);
    authorize_create(Some(&parent), "ws", &bob, true).unwrap();
    let m = message(authorize_create(Some(&parent), "ws", &bob, false));
    assert_eq!(
        m,
        "User does not have permission 'attach' on the parent collection."
    );
    let unlisted = perms(json!({"bob": ["attach", "draft"]}));
    let parent = subject(Some(&unlisted), None);
    let m = message(authorize_create(Some(&parent), "ws", &bob, false));
    assert_eq!(m, "User does not have permission 'list' on the artifact.");
    // Listing can come from the grandparent (read fallback of §2.4).
    let grand = perms(json!({"*": "l"}));
    let parent = subject(Some(&unlisted), Some(&grand));
    authorize_create(Some(&parent), "ws", &bob, false).unwrap();
    // Workspace rw passes every gate.
    let parent = subject(None, None);
    authorize_create(Some(&parent), "ws", &rw, false).unwrap();

    require_persistent_workspace("ws", true).unwrap();
    let m = message(require_persistent_workspace("ws-anon", false));
    assert!(m.contains("'ws-anon' is not persistent"), "{m}");
}

#[test]
fn set_parent_gates() {
    let bob = caller("bob");
    let child = perms(json!({"bob": "r"}));
    let old = perms(json!({"bob": "rw"}));
    let new = perms(json!({"bob": "r+"}));
    let s = subject(Some(&child), Some(&old));
    let target = subject(Some(&new), None);
    authorize_set_parent(&s, Some(&target), &bob).unwrap();
    authorize_set_parent(&s, None, &bob).unwrap();
    // The old parent must grant detach.
    let keep = perms(json!({"bob": "r"}));
    let s2 = subject(Some(&child), Some(&keep));
    let m = message(authorize_set_parent(&s2, None, &bob));
    assert!(m.contains("'detach' on the parent collection"), "{m}");
    // The new parent must grant read and attach.
    let read_only = perms(json!({"bob": "r"}));
    let t2 = subject(Some(&read_only), None);
    let m = message(authorize_set_parent(&s, Some(&t2), &bob));
    assert!(m.contains("'attach' on the parent collection"), "{m}");
    // Same workspace only.
    let far = Subject {
        workspace: "other",
        ..target
    };
    assert!(matches!(
        authorize_set_parent(&s, Some(&far), &bob),
        Err(ArtifactError::InvalidArgument(_))
    ));
    // read on the artifact first (here not even through the parent's permissions).
    let detach_only = perms(json!({"bob": ["detach"]}));
    let s3 = subject(None, Some(&detach_only));
    let m = message(authorize_set_parent(&s3, None, &bob));
    assert!(m.contains("'read' on the artifact"), "{m}");
}

#[test]
fn creator_gets_star() {
    assert_eq!(
        grant_creator(None, "alice").unwrap(),
        json!({"permissions": {"alice": "*"}})
    );
    assert_eq!(
        grant_creator(
            Some(json!({"is_collection": true, "permissions": {"*": "r", "alice": "n"}})),
            "alice"
        )
        .unwrap(),
        json!({"is_collection": true, "permissions": {"*": "r", "alice": "*"}})
    );
    assert_eq!(
        grant_creator(Some(json!({"permissions": null})), "a").unwrap(),
        json!({"permissions": {"a": "*"}})
    );
    assert!(grant_creator(Some(json!("x")), "a").is_err());
    assert!(grant_creator(Some(json!({"permissions": ["r"]})), "a").is_err());
    // The creator passes every code-grantable operation on its artifact.
    let cfg = grant_creator(None, "alice").unwrap();
    let s = subject(Some(&cfg), None);
    authorize(&s, &caller("alice"), Operation::Delete).unwrap();
}

#[test]
fn direct_child_edit_remerges_parent_permissions() {
    let parent = perms(json!({"*": "r", "team/@": "rw", "bob": "l"}));
    let merged = merge_child_permissions(
        json!({"permissions": {"carol": "rw", "*": "n"}, "x": 1}),
        Some(&parent),
        "alice",
    )
    .unwrap();
    assert_eq!(
        merged,
        json!({"x": 1, "permissions": {
            "carol": "rw", "*": "r", "alice": "*", "team/@": "rw", "bob": "l"}})
    );
    // A parent entry for the caller replaces the "*" (spec order: caller, then parent).
    let merged =
        merge_child_permissions(json!({}), Some(&perms(json!({"alice": "r"}))), "alice").unwrap();
    assert_eq!(merged, json!({"permissions": {"alice": "r"}}));
    // No parent permissions: just the caller.
    let merged = merge_child_permissions(Value::Null, Some(&json!({})), "alice").unwrap();
    assert_eq!(merged, json!({"permissions": {"alice": "*"}}));
    assert!(merge_child_permissions(json!([1]), None, "a").is_err());
}

#[test]
fn private_children_listing_filter() {
    let parent = json!({"private_children": true, "recipient_field": "to"});
    let mut carol = caller("carol");
    carol.email = Some("carol@x.org".into());
    let f = recipient_filter(Some(&parent), "ws", &carol).unwrap();
    assert_eq!(f.field, "to");
    assert!(f.admits(Some(&json!({"to": "carol@x.org"}))));
    assert!(!f.admits(Some(&json!({"to": "dave@x.org"}))));
    assert!(!f.admits(None));
    // No e-mail: nothing is admitted.
    let no_email = caller("x");
    let f = recipient_filter(Some(&parent), "ws", &no_email).unwrap();
    assert!(!f.admits(Some(&json!({"to": "carol@x.org"}))));
    // Workspace admins and ordinary collections are not restricted.
    let admin = with_ws(carol.clone(), "ws", Permission::Admin);
    assert_eq!(recipient_filter(Some(&parent), "ws", &admin), None);
    assert_eq!(recipient_filter(Some(&json!({})), "ws", &carol), None);
    assert_eq!(recipient_filter(None, "ws", &carol), None);
    let off = json!({"private_children": false, "recipient_field": "to"});
    assert_eq!(recipient_filter(Some(&off), "ws", &carol), None);
}
