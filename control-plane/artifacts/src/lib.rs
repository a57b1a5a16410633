//! rhizo's artifact manager (DESIGN.md "Control plane", spec `artifacts.md`): the
//! control-plane service `public/artifact-manager` ([`ArtifactManager`], §3) with its HTTP
//! routes (§4), over the SQL rows of the `artifacts` table and an object store of the
//! file bytes (a local directory or S3).
//!
//! * [`service`] — [`ArtifactManager`], the `ControlService` and its RPC methods;
//! * [`http`] — the routes under `/{ws}/artifacts/`, `/{ws}/view/` and the signed object
//!   URLs under `/s3/`;
//! * [`signing`] — the HMAC-signed, expiring URLs rhizo serves itself;
//! * [`zip`] — the streamed stored ZIP of `create-zip-file`;
//! * [`model`] — [`Artifact`], the row of §1.1; its public view (§1.2 ids, §3 "Return
//!   shape") and the client form of `staging` (§1.5).
//! * [`ids`] — `artifact_id` resolution (§1.2), alias rules, templates and random
//!   human-readable aliases (§1.3), and [`ids::safe_join`] for user paths (§1.7).
//! * [`versions`] — the `version` argument resolved to a storage index, and the names of
//!   new versions (§1.6).
//! * [`store`] — [`ArtifactStore`], with [`SqlArtifactStore`] (SQLite | PostgreSQL,
//!   migrations in `migrations/{sqlite,postgres}`) and [`MemoryArtifactStore`]; one
//!   contract suite in `tests/store.rs` runs against all three.
//! * [`permissions`] — the sans-IO permission engine of §2: permission codes, the
//!   principal order of `_check_permissions`, the artifact → parent → workspace wrapper
//!   and the per-method gates of §2.5.
//! * [`objects`] — [`ObjectStore`], where file bytes live, with the key layout of §1.7;
//!   [`LocalObjectStore`] (a directory, the default without S3), [`S3ObjectStore`]
//!   (aws-sdk-s3) and [`MemoryObjectStore`]; one contract suite
//!   (`tests/support/contract.rs`) runs against all three.
//! * [`staging`] — the draft/commit life cycle (§1.5, §1.6, §3.1–§3.5, §3.9, §3.12) as
//!   pure transitions on an [`Artifact`] that return the object-store work as a plan
//!   ([`staging::ObjectOp`]) for the service to run.
//! * [`error`] — [`ArtifactError`], one variant per way the control plane reports an
//!   error (the mapping to `ManagerError` is tabled there).
//!
//! Not here: vector collections, git storage, Zenodo publishing, view templates, the
//! `public/s3-storage` service (docs/compat.md "Artifacts").
//!
//! Sharing a database with the control plane (one `--database-uri`): both open it with
//! `rhizo_control_plane::storage::open_pool`, and both migrators carry versions of their
//! own and ignore the other's (`tests/store.rs` opens them on one file in both orders).

pub mod error;
pub mod http;
pub mod ids;
pub mod model;
pub mod objects;
pub mod permissions;
pub mod service;
pub mod signing;
pub mod staging;
pub mod store;
pub mod versions;
pub mod zip;

pub use error::{ArtifactError, ArtifactResult, StoreError};
pub use model::{Artifact, Version};
pub use objects::{LocalObjectStore, MemoryObjectStore, ObjectStore, S3Config, S3ObjectStore};
pub use service::{ArtifactManager, ArtifactOptions};
pub use store::{ArtifactStore, MemoryArtifactStore, SqlArtifactStore};
