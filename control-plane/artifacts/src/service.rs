//! The RPC service `public/artifact-manager` (spec artifacts.md §3): [`ArtifactManager`]
//! implements the control plane's [`ControlService`], so the manager peer exposes it as
//! the reference's server service, and adds the HTTP routes of §4 ([`crate::http`]).
//!
//! * [`core`] — create, edit, read, commit, discard, delete;
//! * [`extras`] — duplicate and the §3.17 smaller methods;
//! * [`files`] — put_file (and multipart), remove_file, get_file, list_files,
//!   read_file, write_file, and the URLs they hand out;
//! * [`search`] — list and search with keywords, filters, order and pages (§3.7–3.8);
//! * [`args`] — reading the bound call arguments.
//!
//! Every method checks the permissions of §2 first ([`crate::permissions`]); errors are
//! [`ArtifactError`]s, sent as `"<PythonClass>: <message>"` so that hypha-rpc clients
//! raise the class the reference raises. Vector collections, git storage and Zenodo
//! publishing are not implemented (their methods are not exported).

pub(crate) mod args;
mod core;
mod extras;
mod files;
mod search;

use crate::error::{ArtifactError, ArtifactResult};
use crate::model::Artifact;
use crate::objects::{self, ObjectStore};
use crate::permissions::{self, Caller, Subject};
use crate::signing::UrlSigner;
use crate::store::ArtifactStore;
use rhizo_control_plane::manager::Ctx;
use rhizo_control_plane::service::{BoxFuture, ControlService, FunctionSpec, ServiceHost};
use rhizo_control_plane::{ManagerError, ManagerResult};
use rmpv::Value;
use serde_json::Value as Json;
use std::sync::{Arc, Mutex, OnceLock, Weak};

pub(crate) use files::MultipartSession;

/// How the artifact manager hands out file URLs (§5.3).
#[derive(Debug, Clone, Default)]
pub struct ArtifactOptions {
    /// `--enable-s3-proxy`: URLs point at rhizo (which streams from the object store)
    /// unless a call passes `use_proxy=False`. Stores without presigned URLs of their own
    /// (the local directory) always get rhizo's URLs.
    pub proxy: bool,
}

/// The artifact manager: the SQL rows, the object store of the file bytes, and the
/// control plane it runs in. Build it with [`ArtifactManager::new`] and hand it to
/// `Server::builder(..).service(..)`.
pub struct ArtifactManager {
    me: Weak<ArtifactManager>,
    pub(crate) store: Arc<dyn ArtifactStore>,
    pub(crate) objects: Arc<dyn ObjectStore>,
    pub(crate) options: ArtifactOptions,
    host: OnceLock<Arc<dyn ServiceHost>>,
    signer: OnceLock<UrlSigner>,
    /// Open multipart uploads by upload id (kept per instance, like the reference's
    /// Redis keys but without sharing across nodes).
    pub(crate) multipart: Mutex<std::collections::HashMap<String, MultipartSession>>,
}

impl std::fmt::Debug for ArtifactManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactManager")
            .field("store", &self.store)
            .field("objects", &self.objects)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// An artifact with its parent collection, as permission checks need them.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub artifact: Artifact,
    pub parent: Option<Artifact>,
}

static NULL: Json = Json::Null;

impl Loaded {
    /// The permission subject of the artifact.
    pub fn subject(&self) -> Subject<'_> {
        Subject {
            config: self.artifact.config.as_ref(),
            parent_config: self
                .parent
                .as_ref()
                .map(|p| p.config.as_ref().unwrap_or(&NULL)),
            workspace: &self.artifact.workspace,
        }
    }
}

// === impl ArtifactManager ===

impl ArtifactManager {
    /// The manager over `store` (rows) and `objects` (file bytes).
    pub fn new(
        store: Arc<dyn ArtifactStore>,
        objects: Arc<dyn ObjectStore>,
        options: ArtifactOptions,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| ArtifactManager {
            me: me.clone(),
            store,
            objects,
            options,
            host: OnceLock::new(),
            signer: OnceLock::new(),
            multipart: Mutex::new(Default::default()),
        })
    }

    /// The control plane, once attached.
    pub(crate) fn host(&self) -> ArtifactResult<&Arc<dyn ServiceHost>> {
        self.host.get().ok_or_else(|| {
            ArtifactError::ObjectStore("the artifact manager is not attached".into())
        })
    }

    /// The signer of rhizo's own object URLs.
    pub(crate) fn signer(&self) -> ArtifactResult<&UrlSigner> {
        self.signer.get().ok_or_else(|| {
            ArtifactError::ObjectStore("the artifact manager is not attached".into())
        })
    }

    /// The caller of an RPC or HTTP request as the permission engine sees it.
    pub(crate) fn caller(ctx: &Ctx) -> Caller {
        Caller::from_user(&ctx.user, &ctx.ws)
    }

    /// The row an `artifact_id` argument names (§1.2), resolved in `ws`.
    ///
    /// # Errors
    /// [`ArtifactError::NotFound`] "Artifact with ID '…' does not exist."; a malformed id.
    pub(crate) async fn find(&self, id: &str, ws: &str) -> ArtifactResult<Artifact> {
        let target = crate::ids::resolve_artifact_id(id, ws)?;
        self.store
            .find(&target)
            .await?
            .ok_or_else(|| ArtifactError::not_found(id))
    }

    /// [`ArtifactManager::find`] with the parent collection loaded.
    pub(crate) async fn load(&self, id: &str, ws: &str) -> ArtifactResult<Loaded> {
        let artifact = self.find(id, ws).await?;
        let parent = match &artifact.parent_id {
            Some(p) => self.store.get(p).await?,
            None => None,
        };
        Ok(Loaded { artifact, parent })
    }

    /// [`ArtifactManager::load`], then the §2.4 check of `op`.
    pub(crate) async fn load_for(
        &self,
        id: &str,
        caller: &Caller,
        op: permissions::Operation,
    ) -> ArtifactResult<Loaded> {
        let loaded = self.load(id, &caller.current_workspace).await?;
        permissions::authorize(&loaded.subject(), caller, op)?;
        Ok(loaded)
    }

    /// The artifact object clients receive (§3 "Return shape"): the public view, the
    /// `_permissions` expansion, and for collections `config.child_count`.
    pub(crate) async fn view(
        &self,
        a: &Artifact,
        parent: Option<&Artifact>,
    ) -> ArtifactResult<Json> {
        let parent_id = parent.map(Artifact::public_id);
        let mut out = a.public_view(parent_id.as_deref());
        let perms =
            permissions::permissions_view(permissions::config_permissions(a.config.as_ref()));
        out.insert("_permissions".into(), Json::Object(perms));
        if is_collection(a) {
            let n = self.store.count_children(&a.id).await?;
            let config = out
                .entry("config")
                .or_insert_with(|| Json::Object(Default::default()));
            if !config.is_object() {
                *config = Json::Object(Default::default());
            }
            if let Some(c) = config.as_object_mut() {
                c.insert("child_count".into(), n.into());
                c.insert("is_collection".into(), true.into());
            }
        }
        Ok(Json::Object(out))
    }

    /// The object-key prefix of `a`'s workspace (§1.7).
    pub(crate) fn prefix(a: &Artifact) -> String {
        objects::default_prefix(&a.workspace)
    }
}

/// Whether `a` is a collection (type `collection`, or `config.is_collection`).
pub(crate) fn is_collection(a: &Artifact) -> bool {
    a.kind.as_deref() == Some("collection")
        || a.config
            .as_ref()
            .and_then(|c| c.get("is_collection"))
            .and_then(Json::as_bool)
            .unwrap_or(false)
}

/// The parameters of `list` and its alias `list_children` (§3.7).
const LIST_PARAMS: &[(&str, bool)] = &[
    ("parent_id", true),
    ("keywords", true),
    ("filters", true),
    ("mode", true),
    ("offset", true),
    ("limit", true),
    ("order_by", true),
    ("silent", true),
    ("pagination", true),
    ("stage", true),
];

/// The functions of `public/artifact-manager`, with their parameters in the
/// reference's order (every one optional but the ids the method cannot do without).
const FUNCTIONS: &[FunctionSpec] = &[
    FunctionSpec {
        name: "create",
        params: &[
            ("alias", true),
            ("artifact_id", true),
            ("workspace", true),
            ("parent_id", true),
            ("manifest", true),
            ("type", true),
            ("config", true),
            ("secrets", true),
            ("version", true),
            ("comment", true),
            ("overwrite", true),
            ("stage", true),
        ],
        doc: "Create an artifact (optionally staged, under a parent collection).",
    },
    FunctionSpec {
        name: "edit",
        params: &[
            ("artifact_id", false),
            ("manifest", true),
            ("type", true),
            ("config", true),
            ("secrets", true),
            ("version", true),
            ("comment", true),
            ("stage", true),
            ("branch", true),
        ],
        doc: "Edit an artifact's manifest, config or secrets, staged or in place.",
    },
    FunctionSpec {
        name: "read",
        params: &[
            ("artifact_id", false),
            ("silent", true),
            ("version", true),
            ("stage", true),
        ],
        doc: "Read an artifact (a version, or the staged draft).",
    },
    FunctionSpec {
        name: "commit",
        params: &[
            ("artifact_id", false),
            ("version", true),
            ("comment", true),
            ("branch", true),
        ],
        doc: "Commit the staged changes of an artifact as a version.",
    },
    FunctionSpec {
        name: "discard",
        params: &[("artifact_id", false)],
        doc: "Discard the staged changes of an artifact.",
    },
    FunctionSpec {
        name: "delete",
        params: &[
            ("artifact_id", false),
            ("delete_files", true),
            ("recursive", true),
            ("version", true),
        ],
        doc: "Delete an artifact, or one of its versions.",
    },
    FunctionSpec {
        name: "list",
        params: LIST_PARAMS,
        doc: "List the children of a collection (or the root artifacts of the workspace).",
    },
    FunctionSpec {
        name: "list_children",
        params: LIST_PARAMS,
        doc: "The same as list (the name of the reference's HTTP children route).",
    },
    FunctionSpec {
        name: "search",
        params: &[
            ("parent_id", true),
            ("keywords", true),
            ("filters", true),
            ("mode", true),
            ("offset", true),
            ("limit", true),
            ("order_by", true),
            ("pagination", true),
            ("stage", true),
        ],
        doc: "Search the artifacts of a collection or of the workspace.",
    },
    FunctionSpec {
        name: "put_file",
        params: &[
            ("artifact_id", false),
            ("file_path", false),
            ("download_weight", true),
            ("use_proxy", true),
            ("use_local_url", true),
            ("expires_in", true),
            ("branch", true),
        ],
        doc: "A URL to upload a file of a staged artifact (HTTP PUT).",
    },
    FunctionSpec {
        name: "put_file_start_multipart",
        params: &[
            ("artifact_id", false),
            ("file_path", false),
            ("part_count", false),
            ("download_weight", true),
            ("expires_in", true),
            ("use_proxy", true),
            ("use_local_url", true),
        ],
        doc: "Start a multipart upload: one URL per part.",
    },
    FunctionSpec {
        name: "put_file_complete_multipart",
        params: &[
            ("artifact_id", false),
            ("upload_id", false),
            ("parts", false),
        ],
        doc: "Complete a multipart upload from its parts' ETags.",
    },
    FunctionSpec {
        name: "remove_file",
        params: &[
            ("artifact_id", false),
            ("file_path", false),
            ("branch", true),
        ],
        doc: "Remove a file from a staged artifact.",
    },
    FunctionSpec {
        name: "get_file",
        params: &[
            ("artifact_id", false),
            ("file_path", false),
            ("silent", true),
            ("version", true),
            ("stage", true),
            ("branch", true),
            ("use_proxy", true),
            ("use_local_url", true),
            ("expires_in", true),
        ],
        doc: "A URL to download a file of an artifact (HTTP GET).",
    },
    FunctionSpec {
        name: "list_files",
        params: &[
            ("artifact_id", false),
            ("dir_path", true),
            ("limit", true),
            ("offset", true),
            ("version", true),
            ("stage", true),
            ("branch", true),
            ("include_pending", true),
        ],
        doc: "List one directory level of an artifact's files.",
    },
    FunctionSpec {
        name: "read_file",
        params: &[
            ("artifact_id", false),
            ("file_path", false),
            ("format", true),
            ("encoding", true),
            ("offset", true),
            ("limit", true),
            ("version", true),
            ("stage", true),
            ("branch", true),
        ],
        doc: "Read (part of) a file's content.",
    },
    FunctionSpec {
        name: "write_file",
        params: &[
            ("artifact_id", false),
            ("file_path", false),
            ("content", false),
            ("format", true),
            ("encoding", true),
            ("branch", true),
        ],
        doc: "Write a file of a staged artifact from its content.",
    },
    FunctionSpec {
        name: "duplicate",
        params: &[
            ("source_artifact_id", false),
            ("target_alias", true),
            ("target_workspace", true),
            ("target_parent_id", true),
            ("overwrite", true),
            ("remove_secrets", true),
            ("stage", true),
        ],
        doc: "Copy a committed artifact and its latest files.",
    },
    FunctionSpec {
        name: "reset_stats",
        params: &[("artifact_id", false)],
        doc: "Zero the view and download counts.",
    },
    FunctionSpec {
        name: "set_parent",
        params: &[("artifact_id", false), ("new_parent_id", true)],
        doc: "Move an artifact under another collection (or to the root).",
    },
    FunctionSpec {
        name: "get_secret",
        params: &[("artifact_id", false), ("secret_key", true)],
        doc: "Read an artifact's secrets (workspace admins).",
    },
    FunctionSpec {
        name: "set_secret",
        params: &[
            ("artifact_id", false),
            ("secret_key", false),
            ("secret_value", true),
        ],
        doc: "Set or delete one secret of an artifact.",
    },
    FunctionSpec {
        name: "set_download_weight",
        params: &[
            ("artifact_id", false),
            ("file_path", false),
            ("download_weight", false),
        ],
        doc: "Set the download weight of a file.",
    },
    FunctionSpec {
        name: "get_status",
        params: &[("artifact_id", false), ("branch", true)],
        doc: "Whether the artifact is staged, and its staged files.",
    },
    FunctionSpec {
        name: "discard_changes",
        params: &[("artifact_id", false), ("branch", true)],
        doc: "Drop the staging session of an artifact.",
    },
];

/// An [`ArtifactError`] as the control plane reports it (the class kept in the text).
pub(crate) fn manager_error(e: ArtifactError) -> ManagerError {
    match e {
        ArtifactError::NotFound(m) => ManagerError::NotFound(m),
        ArtifactError::InvalidArgument(m) => ManagerError::InvalidArgument(m),
        ArtifactError::Permission(m) => ManagerError::Permission(m),
        ArtifactError::Store(e) => ManagerError::Store(e.to_string()),
        ArtifactError::ObjectStore(m) => {
            tracing::warn!("artifact object store: {m}");
            ManagerError::Store(m)
        }
        other => ManagerError::Remote(other.wire()),
    }
}

impl ControlService for ArtifactManager {
    fn id(&self) -> &'static str {
        "artifact-manager"
    }

    fn name(&self) -> &str {
        "Artifact Manager"
    }

    fn description(&self) -> &str {
        "Manage artifacts in a workspace."
    }

    fn functions(&self) -> &'static [FunctionSpec] {
        FUNCTIONS
    }

    fn attach(&self, host: Arc<dyn ServiceHost>) {
        let _ = self
            .signer
            .set(UrlSigner::new(host.derive_key("artifact-object-url")));
        let _ = self.host.set(host);
    }

    fn routes(&self) -> Option<axum::Router> {
        self.me.upgrade().map(crate::http::routes)
    }

    fn call<'a>(
        &'a self,
        ctx: &'a Ctx,
        function: &'a str,
        args: Vec<Value>,
    ) -> BoxFuture<'a, ManagerResult<Value>> {
        Box::pin(async move {
            let a = args::Args::new(function, &args);
            if function == "read_file" {
                // Its content may be bytes, which JSON cannot carry.
                return self.read_file(ctx, &a).await.map_err(manager_error);
            }
            let result = match function {
                "create" => self.create(ctx, &a).await,
                "edit" => self.edit(ctx, &a).await,
                "read" => self.read(ctx, &a).await,
                "commit" => self.commit(ctx, &a).await,
                "discard" => self.discard(ctx, &a).await,
                "delete" => self.delete(ctx, &a).await,
                "list" | "list_children" => self.list(ctx, &a).await,
                "search" => self.search(ctx, &a).await,
                "put_file" => self.put_file(ctx, &a).await,
                "put_file_start_multipart" => self.put_file_start_multipart(ctx, &a).await,
                "put_file_complete_multipart" => self.put_file_complete_multipart(ctx, &a).await,
                "remove_file" => self.remove_file(ctx, &a).await,
                "get_file" => self.get_file(ctx, &a).await,
                "list_files" => self.list_files(ctx, &a).await,
                "write_file" => self.write_file(ctx, &a).await,
                "duplicate" => self.duplicate(ctx, &a).await,
                "reset_stats" => self.reset_stats(ctx, &a).await,
                "set_parent" => self.set_parent(ctx, &a).await,
                "get_secret" => self.get_secret(ctx, &a).await,
                "set_secret" => self.set_secret(ctx, &a).await,
                "set_download_weight" => self.set_download_weight(ctx, &a).await,
                "get_status" => self.get_status(ctx, &a).await,
                "discard_changes" => self.discard_changes(ctx, &a).await,
                other => return Err(ManagerError::MethodNotFound(other.to_owned())),
            };
            result
                .map(|j| rhizo_protocol::value::from_json(&j))
                .map_err(manager_error)
        })
    }
}
