use super::*;
use crate::model::client_staging;
use serde_json::json;

const P: &str = "ws/artifacts";

fn committed(n: usize) -> Artifact {
    let mut a = Artifact::new("ws", "data");
    a.manifest = Some(json!({"name": "pub"}));
    a.config = Some(json!({"permissions": {"u": "*"}}));
    a.secrets = Some(json!({"K": "v"}));
    a.versions = (0..n)
        .map(|i| Version {
            version: format!("v{i}"),
            comment: None,
            created_at: 1,
        })
        .collect();
    a
}

fn draft() -> Artifact {
    let mut a = committed(0);
    stage_create(&mut a, P);
    a
}

fn fkey(a: &Artifact, i: u64, p: &str) -> String {
    format!("{P}/{}/v{i}/{p}", a.id)
}

fn bkey(a: &Artifact, p: &str) -> String {
    format!("{P}/{}/.stage_backup/{p}", a.id)
}

fn snap(a: &Artifact, i: u64) -> ObjectOp {
    ObjectOp::WriteSnapshot {
        key: format!("{P}/{}/v{i}.json", a.id),
    }
}

fn files(a: &Artifact) -> Vec<StagedFile> {
    Draft::from_artifact(a).unwrap().unwrap().files
}

#[test]
fn staged_index_follows_the_intent() {
    let none = committed(0).versions;
    let two = committed(2).versions;
    assert_eq!(staged_index(&none, Intent::NewVersion), 0);
    assert_eq!(staged_index(&none, Intent::EditVersion), 0);
    assert_eq!(staged_index(&two, Intent::NewVersion), 2);
    assert_eq!(staged_index(&two, Intent::EditVersion), 1);
}

#[test]
fn stage_create_opens_a_new_version_draft_of_the_columns() {
    let mut a = committed(1);
    let ops = stage_create(&mut a, P);
    assert!(a.versions.is_empty());
    assert_eq!(ops, vec![snap(&a, 0)]);
    assert_eq!(
        a.staging,
        Some(
            json!({"manifest": {"name": "pub"}, "config": {"permissions": {"u": "*"}},
                    "secrets": {"K": "v"}, "type": "generic", "files": [],
                    "_intent": "new_version"})
        )
    );
    assert_eq!(
        client_staging(a.staging.as_ref()),
        json!([{"_intent": "new_version"}])
    );
    assert_eq!(a.manifest, Some(json!({"name": "pub"})));
}

#[test]
fn edit_intent_parses_the_version_argument() {
    assert_eq!(edit_intent(None).unwrap(), None);
    assert_eq!(edit_intent(Some("stage")).unwrap(), None);
    assert_eq!(edit_intent(Some("new")).unwrap(), Some(Intent::NewVersion));
    assert!(matches!(
        edit_intent(Some("v0")),
        Err(ArtifactError::InvalidArgument(_))
    ));
}

#[test]
fn stage_edit_opens_in_place_and_leaves_the_columns() {
    let mut a = committed(2);
    let fields = DraftFields {
        manifest: Some(json!({"name": "draft"})),
        ..DraftFields::default()
    };
    let ops = stage_edit(&mut a, P, fields).unwrap();
    assert_eq!(ops, vec![snap(&a, 1)]);
    let d = Draft::from_artifact(&a).unwrap().unwrap();
    assert_eq!(d.intent, Some(Intent::EditVersion));
    assert_eq!(d.manifest, Some(json!({"name": "draft"})));
    assert_eq!(d.config, a.config);
    assert_eq!(d.secrets, Some(json!({"K": "v"})));
    assert_eq!(d.kind.as_deref(), Some("generic"));
    assert_eq!(a.manifest, Some(json!({"name": "pub"})));
}

#[test]
fn stage_new_version_targets_the_next_slot() {
    let mut a = committed(2);
    let ops = stage_new_version(&mut a, P, DraftFields::default()).unwrap();
    assert_eq!(ops, vec![snap(&a, 2)]);
    assert_eq!(
        Draft::from_artifact(&a).unwrap().unwrap().intent,
        Some(Intent::NewVersion)
    );
}

#[test]
fn restaging_overwrites_only_given_fields_and_keeps_the_intent() {
    let mut a = committed(1);
    stage_new_version(
        &mut a,
        P,
        DraftFields {
            manifest: Some(json!({"name": "one"})),
            config: Some(json!({"c": 1})),
            ..DraftFields::default()
        },
    )
    .unwrap();
    stage_edit(
        &mut a,
        P,
        DraftFields {
            config: Some(json!({"c": 2})),
            kind: Some("dataset".into()),
            ..DraftFields::default()
        },
    )
    .unwrap();
    let d = Draft::from_artifact(&a).unwrap().unwrap();
    assert_eq!(d.intent, Some(Intent::NewVersion));
    assert_eq!(d.manifest, Some(json!({"name": "one"})));
    assert_eq!(d.config, Some(json!({"c": 2})));
    assert_eq!(d.kind.as_deref(), Some("dataset"));
    // Explicit intent change without files is allowed ...
    stage(&mut a, P, DraftFields::default(), Some(Intent::EditVersion)).unwrap();
    assert_eq!(
        Draft::from_artifact(&a).unwrap().unwrap().intent,
        Some(Intent::EditVersion)
    );
    // ... but not once files are staged.
    stage_put_file(&mut a, P, "x", 0.0).unwrap();
    let before = a.clone();
    let err = stage_new_version(&mut a, P, DraftFields::default()).unwrap_err();
    assert!(matches!(err, ArtifactError::InvalidArgument(_)));
    assert_eq!(a, before);
}

#[test]
fn legacy_list_staging_is_normalised() {
    let mut a = committed(1);
    a.staging = Some(json!([{"path": "a.txt", "download_weight": 2.0},
                            {"path": "b.txt", "_remove": true},
                            {"_intent": "new_version"}]));
    let d = Draft::from_artifact(&a).unwrap().unwrap();
    assert_eq!(d.intent, Some(Intent::NewVersion));
    assert_eq!(
        d.files,
        vec![
            StagedFile::Put {
                path: "a.txt".into(),
                download_weight: Some(2.0)
            },
            StagedFile::Remove {
                path: "b.txt".into()
            },
        ]
    );
    assert_eq!(d.manifest, None);
    // The first transition rewrites it in internal form, filling values from columns.
    stage_edit(&mut a, P, DraftFields::default()).unwrap();
    let s = a.staging.clone().unwrap();
    assert!(s.is_object());
    assert_eq!(s["manifest"], json!({"name": "pub"}));
    assert_eq!(s["_intent"], "new_version");
    assert_eq!(
        client_staging(Some(&s)),
        json!([{"path": "a.txt", "download_weight": 2.0},
               {"path": "b.txt", "_remove": true}, {"_intent": "new_version"}])
    );
    // A put on a legacy draft normalises it too.
    let mut b = committed(0);
    b.staging = Some(json!([{"path": "a"}]));
    stage_put_file(&mut b, P, "c", 0.0).unwrap();
    assert_eq!(
        b.staging.as_ref().unwrap()["files"],
        json!([{"path": "a"}, {"path": "c"}])
    );
}

#[test]
fn git_and_malformed_staging_are_refused() {
    let mut a = committed(1);
    a.staging = Some(json!({"_active_branch": "main", "main": {"files": []}}));
    assert!(Draft::from_artifact(&a).is_err());
    a.staging = Some(json!("x"));
    assert!(Draft::from_artifact(&a).is_err());
    a.staging = Some(json!({"files": [{"nopath": 1}]}));
    assert!(Draft::from_artifact(&a).is_err());
    a.staging = Some(Value::Null);
    assert_eq!(Draft::from_artifact(&a).unwrap(), None);
}

#[test]
fn put_file_records_weights_and_replaces_entries() {
    let mut a = draft();
    let ops = stage_put_file(&mut a, P, "data/a.csv", 0.0).unwrap();
    assert_eq!(ops, vec![snap(&a, 0)]);
    stage_put_file(&mut a, P, "b.bin", 1.5).unwrap();
    stage_put_file(&mut a, P, "data/a.csv", 3.0).unwrap();
    assert_eq!(
        a.staging.as_ref().unwrap()["files"],
        json!([{"path": "data/a.csv", "download_weight": 3.0},
               {"path": "b.bin", "download_weight": 1.5}])
    );
    stage_put_file(&mut a, P, "b.bin", 0.0).unwrap();
    assert_eq!(
        a.staging.as_ref().unwrap()["files"][1],
        json!({"path": "b.bin"})
    );
}

#[test]
fn put_file_validates_state_path_and_weight() {
    let mut a = committed(1);
    let err = stage_put_file(&mut a, P, "a", 0.0).unwrap_err();
    assert_eq!(err.to_string(), "Artifact must be in staging mode.");
    let mut a = draft();
    for bad in ["", "/abs", "../x", "a/../b", "a\\b", "a//b", "./a"] {
        assert!(
            matches!(
                stage_put_file(&mut a, P, bad, 0.0),
                Err(ArtifactError::InvalidArgument(_))
            ),
            "{bad}"
        );
    }
    assert!(stage_put_file(&mut a, P, "a", -1.0).is_err());
    assert!(stage_put_file(&mut a, P, "a", f64::NAN).is_err());
    assert!(files(&a).is_empty());
    assert!(stage_remove_file(&mut a, P, "../x").is_err());
    assert!(stage_remove_file(&mut committed(1), P, "a").is_err());
}

#[test]
fn in_place_edit_backs_up_once_per_path() {
    let mut a = committed(2);
    stage_edit(&mut a, P, DraftFields::default()).unwrap();
    let ops = stage_put_file(&mut a, P, "a.txt", 0.0).unwrap();
    assert_eq!(
        ops,
        vec![
            ObjectOp::Backup {
                from: fkey(&a, 1, "a.txt"),
                to: bkey(&a, "a.txt")
            },
            snap(&a, 1)
        ]
    );
    // Second put of the same path: no second backup.
    assert_eq!(
        stage_put_file(&mut a, P, "a.txt", 1.0).unwrap(),
        vec![snap(&a, 1)]
    );
    // Removing it (added in session): delete now, no backup.
    assert_eq!(
        stage_remove_file(&mut a, P, "a.txt").unwrap(),
        vec![ObjectOp::Delete {
            key: fkey(&a, 1, "a.txt")
        }]
    );
    // Putting it again after the removal still does not back up again.
    assert_eq!(
        stage_put_file(&mut a, P, "a.txt", 0.0).unwrap(),
        vec![snap(&a, 1)]
    );
    // Removing a committed file backs it up before the marker.
    assert_eq!(
        stage_remove_file(&mut a, P, "old.txt").unwrap(),
        vec![ObjectOp::Backup {
            from: fkey(&a, 1, "old.txt"),
            to: bkey(&a, "old.txt")
        }]
    );
    // The marker is added once; putting the path replaces it without a new backup.
    assert_eq!(stage_remove_file(&mut a, P, "old.txt").unwrap(), vec![]);
    assert_eq!(
        files(&a),
        vec![
            StagedFile::Put {
                path: "a.txt".into(),
                download_weight: None
            },
            StagedFile::Remove {
                path: "old.txt".into()
            }
        ]
    );
    assert_eq!(
        stage_put_file(&mut a, P, "old.txt", 0.0).unwrap(),
        vec![snap(&a, 1)]
    );
    let d = Draft::from_artifact(&a).unwrap().unwrap();
    assert_eq!(
        d.backed_up,
        vec!["a.txt".to_string(), "old.txt".to_string()]
    );
    // The bookkeeping is hidden from clients.
    assert!(!client_staging(a.staging.as_ref())
        .to_string()
        .contains("_backed_up"));
}

#[test]
fn new_version_and_drafts_never_back_up() {
    let mut a = committed(2);
    stage_new_version(&mut a, P, DraftFields::default()).unwrap();
    assert_eq!(
        stage_put_file(&mut a, P, "a", 0.0).unwrap(),
        vec![snap(&a, 2)]
    );
    assert_eq!(stage_remove_file(&mut a, P, "prev").unwrap(), vec![]);
    assert_eq!(
        stage_remove_file(&mut a, P, "a").unwrap(),
        vec![ObjectOp::Delete {
            key: fkey(&a, 2, "a")
        }]
    );
    let mut d = draft();
    assert_eq!(
        stage_put_file(&mut d, P, "a", 0.0).unwrap(),
        vec![snap(&d, 0)]
    );
}

#[test]
fn commit_requires_staging_and_rejects_stage_version() {
    let mut a = committed(1);
    let err = commit(&mut a, P, None, None, 5).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Artifact must be in staging mode to commit."
    );
    let mut a = draft();
    let before = a.clone();
    assert!(commit(&mut a, P, Some("stage"), None, 5).is_err());
    assert_eq!(a, before);
}

#[test]
fn first_commit_of_a_draft() {
    let mut a = draft();
    stage_put_file(&mut a, P, "a.csv", 2.0).unwrap();
    stage_put_file(&mut a, P, "b.csv", 0.0).unwrap();
    let plan = commit(&mut a, P, None, Some("first"), 42).unwrap();
    assert_eq!(plan.index, 0);
    assert_eq!(plan.warning, None);
    let id = a.id.clone();
    assert_eq!(
        plan.ops,
        vec![
            ObjectOp::RequireExists {
                key: fkey(&a, 0, "a.csv"),
                path: "a.csv".into()
            },
            ObjectOp::RequireExists {
                key: fkey(&a, 0, "b.csv"),
                path: "b.csv".into()
            },
            ObjectOp::CountFiles {
                dir: format!("{P}/{id}/v0")
            },
            snap(&a, 0),
        ]
    );
    assert_eq!(
        a.versions,
        vec![Version {
            version: "v0".into(),
            comment: Some("first".into()),
            created_at: 42
        }]
    );
    assert_eq!(a.staging, None);
    assert_eq!(a.last_modified, 42);
    assert_eq!(
        a.config,
        Some(json!({"permissions": {"u": "*"}, "download_weights": {"a.csv": 2.0}}))
    );
}

#[test]
fn new_version_commit_appends_and_moves_the_draft_values() {
    let mut a = committed(2);
    a.config = None;
    stage_new_version(
        &mut a,
        P,
        DraftFields {
            manifest: Some(json!({"name": "new"})),
            secrets: Some(json!({"S": "t"})),
            kind: Some("model".into()),
            ..DraftFields::default()
        },
    )
    .unwrap();
    stage_put_file(&mut a, P, "w.bin", 1.0).unwrap();
    stage_remove_file(&mut a, P, "gone").unwrap();
    let plan = commit(&mut a, P, Some("gold"), None, 7).unwrap();
    assert_eq!(plan.index, 2);
    let id = a.id.clone();
    assert_eq!(
        plan.ops,
        vec![
            ObjectOp::RequireExists {
                key: fkey(&a, 2, "w.bin"),
                path: "w.bin".into()
            },
            // rhizo: in the new version's folder, not in v1.
            ObjectOp::Delete {
                key: fkey(&a, 2, "gone")
            },
            ObjectOp::CountFiles {
                dir: format!("{P}/{id}/v2")
            },
            snap(&a, 2),
        ]
    );
    assert_eq!(a.versions.len(), 3);
    assert_eq!(a.versions[2].version, "gold");
    assert_eq!(a.versions[2].created_at, 7);
    assert_eq!(a.manifest, Some(json!({"name": "new"})));
    assert_eq!(a.secrets, Some(json!({"S": "t"})));
    assert_eq!(a.kind.as_deref(), Some("model"));
    assert_eq!(a.config, Some(json!({"download_weights": {"w.bin": 1.0}})));
    // The next default name counts entries.
    stage_new_version(&mut a, P, DraftFields::default()).unwrap();
    commit(&mut a, P, None, None, 8).unwrap();
    assert_eq!(a.versions[3].version, "v3");
}

#[test]
fn duplicate_version_names_are_rejected_without_change() {
    let mut a = committed(2);
    stage_new_version(&mut a, P, DraftFields::default()).unwrap();
    let before = a.clone();
    let err = commit(&mut a, P, Some("v1"), None, 9).unwrap_err();
    assert!(matches!(err, ArtifactError::InvalidArgument(_)));
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(a, before);
    // "new" means the default name.
    commit(&mut a, P, Some("new"), None, 9).unwrap();
    assert_eq!(a.versions[2].version, "v2");
}

#[test]
fn in_place_commit_keeps_versions_and_clears_the_backup() {
    let mut a = committed(2);
    a.config = Some(json!({"download_weights": {"old": 1.0}}));
    stage_edit(&mut a, P, DraftFields::default()).unwrap();
    stage_put_file(&mut a, P, "a", 4.0).unwrap();
    stage_remove_file(&mut a, P, "old").unwrap();
    let plan = commit(&mut a, P, Some("renamed"), Some("fix"), 11).unwrap();
    assert_eq!(plan.index, 1);
    assert!(plan.warning.unwrap().contains("renamed"));
    let id = a.id.clone();
    assert_eq!(
        plan.ops,
        vec![
            ObjectOp::RequireExists {
                key: fkey(&a, 1, "a"),
                path: "a".into()
            },
            ObjectOp::Delete {
                key: fkey(&a, 1, "old")
            },
            ObjectOp::DeletePrefix {
                prefix: format!("{P}/{id}/.stage_backup")
            },
            ObjectOp::CountFiles {
                dir: format!("{P}/{id}/v1")
            },
            snap(&a, 1),
        ]
    );
    assert_eq!(a.versions.len(), 2);
    assert_eq!(a.versions[1].version, "v1");
    assert_eq!(a.versions[1].comment.as_deref(), Some("fix"));
    assert_eq!(a.versions[1].created_at, 1);
    assert_eq!(
        a.config,
        Some(json!({"download_weights": {"old": 1.0, "a": 4.0}}))
    );
    assert_eq!(a.staging, None);
    // Without a comment the last one stays.
    stage_edit(&mut a, P, DraftFields::default()).unwrap();
    let plan = commit(&mut a, P, None, None, 12).unwrap();
    assert_eq!(plan.warning, None);
    assert_eq!(a.versions[1].comment.as_deref(), Some("fix"));
}

#[test]
fn commit_replaces_a_non_dict_config_to_hold_weights() {
    let mut a = draft();
    a.staging.as_mut().unwrap()["config"] = json!("odd");
    stage_put_file(&mut a, P, "f", 1.0).unwrap();
    commit(&mut a, P, None, None, 1).unwrap();
    assert_eq!(a.config, Some(json!({"download_weights": {"f": 1.0}})));
}

#[test]
fn legacy_commit_keeps_the_columns() {
    let mut a = committed(1);
    a.staging = Some(json!([{"path": "x", "download_weight": 1.0}]));
    let plan = commit(&mut a, P, None, None, 3).unwrap();
    // No intent: in place.
    assert_eq!(plan.index, 0);
    assert_eq!(a.versions.len(), 1);
    assert_eq!(a.manifest, Some(json!({"name": "pub"})));
    assert_eq!(a.secrets, Some(json!({"K": "v"})));
    assert_eq!(
        a.config.as_ref().unwrap()["download_weights"],
        json!({"x": 1.0})
    );
}

#[test]
fn discard_requires_staging() {
    let mut a = committed(1);
    let err = discard(&mut a, P).unwrap_err();
    assert_eq!(
        err.to_string(),
        "No staged changes to discard. Artifact is not in staging mode."
    );
}

#[test]
fn discard_new_version_deletes_the_next_slot() {
    let mut a = committed(2);
    stage_new_version(
        &mut a,
        P,
        DraftFields {
            manifest: Some(json!({"name": "draft"})),
            ..DraftFields::default()
        },
    )
    .unwrap();
    stage_put_file(&mut a, P, "a", 0.0).unwrap();
    let ops = discard(&mut a, P).unwrap();
    let id = a.id.clone();
    assert_eq!(
        ops,
        vec![
            ObjectOp::DeletePrefix {
                prefix: format!("{P}/{id}/v2")
            },
            ObjectOp::Delete {
                key: format!("{P}/{id}/v2.json")
            },
        ]
    );
    assert_eq!(a.staging, None);
    assert_eq!(a.versions.len(), 2);
    assert_eq!(a.manifest, Some(json!({"name": "pub"})));
}

#[test]
fn discard_of_a_never_committed_draft_orphans_the_row() {
    let mut a = draft();
    stage_put_file(&mut a, P, "a", 0.0).unwrap();
    let ops = discard(&mut a, P).unwrap();
    let id = a.id.clone();
    assert_eq!(
        ops,
        vec![
            ObjectOp::DeletePrefix {
                prefix: format!("{P}/{id}/v0")
            },
            ObjectOp::Delete {
                key: format!("{P}/{id}/v0.json")
            },
        ]
    );
    assert_eq!(a.staging, None);
    assert!(a.versions.is_empty());
    assert_eq!(a.alias.as_deref(), Some("data"));
}

#[test]
fn discard_in_place_restores_backups() {
    let mut a = committed(1);
    stage_edit(&mut a, P, DraftFields::default()).unwrap();
    stage_put_file(&mut a, P, "a", 0.0).unwrap();
    stage_remove_file(&mut a, P, "b").unwrap();
    let ops = discard(&mut a, P).unwrap();
    let id = a.id.clone();
    assert_eq!(
        ops,
        vec![
            ObjectOp::Restore {
                backup: bkey(&a, "a"),
                target: fkey(&a, 0, "a")
            },
            ObjectOp::Restore {
                backup: bkey(&a, "b"),
                target: fkey(&a, 0, "b")
            },
            ObjectOp::DeletePrefix {
                prefix: format!("{P}/{id}/.stage_backup")
            },
        ]
    );
    assert_eq!(a.staging, None);
    assert_eq!(a.versions.len(), 1);
}

#[test]
fn custom_prefix_without_s3_prefix() {
    let mut a = draft();
    stage_put_file(&mut a, "", "f", 0.0).unwrap();
    let plan = commit(&mut a, "", None, None, 1).unwrap();
    assert_eq!(
        plan.ops[0],
        ObjectOp::RequireExists {
            key: format!("{}/v0/f", a.id),
            path: "f".into()
        }
    );
}
