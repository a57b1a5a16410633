//! The controller's errors, mapped onto the control plane's [`ManagerError`] (and so onto
//! reject texts a client sees) in one place.

use rhizo_control_plane::ManagerError;

/// What can go wrong in the server-apps controller.
#[derive(Debug, thiserror::Error)]
pub enum AppsError {
    /// Bad arguments or a manifest that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// The caller may not do this.
    #[error("{0}")]
    Permission(String),
    /// No such app, session or worker.
    #[error("{0}")]
    NotFound(String),
    /// No worker runs this app type (`WorkerNotFoundError` in the reference, §7).
    #[error("No server app worker found for app type: {0}")]
    NoWorker(String),
    /// The worker failed or could not be reached.
    #[error("{0}")]
    Worker(String),
    /// Waiting for the app ran out of time.
    #[error("{0}")]
    Timeout(String),
    /// An error of another control-plane service (the artifact manager).
    #[error(transparent)]
    Manager(#[from] ManagerError),
}

impl From<crate::sessions::StoreError> for AppsError {
    fn from(e: crate::sessions::StoreError) -> Self {
        AppsError::Worker(e.to_string())
    }
}

/// A result of the controller.
pub type AppsResult<T> = Result<T, AppsError>;

impl From<AppsError> for ManagerError {
    fn from(e: AppsError) -> Self {
        match e {
            AppsError::Invalid(m) => ManagerError::InvalidArgument(m),
            AppsError::Permission(m) => ManagerError::Permission(m),
            AppsError::NotFound(m) => ManagerError::NotFound(m),
            AppsError::NoWorker(_) => ManagerError::NotFound(e.to_string()),
            AppsError::Worker(m) => ManagerError::Internal(m),
            AppsError::Timeout(m) => ManagerError::Timeout(m),
            AppsError::Manager(m) => m,
        }
    }
}
