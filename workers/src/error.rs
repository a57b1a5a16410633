//! What a worker call can fail with, worded for the user who made the call (the text is what
//! the caller's `await worker.method(...)` raises). Handlers return `Result<Value, String>`;
//! [`WorkerError`] turns into that string in one place (`From<WorkerError> for String`).

/// A failed worker call (apps-workers.md §3.4: WorkerError, SessionNotFoundError).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// No session with this id on this worker (or it was stopped).
    #[error("Session not found: {0}")]
    SessionNotFound(String),
    /// `start` for a session id that is already running here.
    #[error("Session already exists: {0}")]
    SessionExists(String),
    /// The caller is neither in the session's workspace nor an admin of it.
    #[error(
        "PermissionError: session {session} belongs to workspace {owner}; \
         a caller from workspace {caller} may not use it"
    )]
    Permission {
        /// The session id.
        session: String,
        /// The session's workspace.
        owner: String,
        /// The caller's workspace (trusted, stamped by the server).
        caller: String,
    },
    /// A missing or malformed argument.
    #[error("TypeError: {0}")]
    Argument(String),
    /// A well-formed request this worker cannot carry out (e.g. a bad manifest field).
    #[error("ValueError: {0}")]
    Invalid(String),
    /// The terminal worker already runs its maximum number of sessions.
    #[error(
        "Maximum number of terminal sessions ({0}) reached; stop a session first \
         (or raise --max-sessions / HYPHA_MAX_TERMINAL_SESSIONS)"
    )]
    TooManySessions(usize),
    /// The browser worker already runs its maximum number of sessions.
    #[error(
        "Maximum number of browser sessions ({0}) reached; stop a session first \
         (or raise RHIZO_BROWSER_MAX_SESSIONS)"
    )]
    TooManyBrowserSessions(usize),
    /// Fetching an app file from the server failed.
    #[error("Failed to fetch {url}: {reason}")]
    Fetch {
        /// The URL that was requested (without the token).
        url: String,
        /// HTTP status or transport error.
        reason: String,
    },
    /// The app's process did not finish within its timeout and was killed.
    #[error("TimeoutError: {0}")]
    Timeout(String),
    /// Starting the session's process or preparing its directory failed.
    #[error("WorkerError: {0}")]
    Io(String),
}

impl From<WorkerError> for String {
    fn from(e: WorkerError) -> String {
        e.to_string()
    }
}

/// The result of a worker function.
pub type WorkerResult<T> = Result<T, WorkerError>;
