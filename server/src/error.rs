//! The server library's error type. The web layer turns it into problem+json responses
//! (`http::error`); binaries wrap it with `anyhow` context.

/// What went wrong, in terms a handler can map to a status without guessing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that breaks a rule; `field` names the offending field for the client.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("not found")]
    NotFound,
    /// The user's role may not do this (checked beyond the permission table, e.g. the desk's
    /// workflow table).
    #[error("forbidden")]
    Forbidden,
    /// A uniqueness or state conflict, with a message naming what conflicts.
    #[error("{0}")]
    Conflict(String),
    /// An upload over its limit, with a message naming the limit.
    #[error("{0}")]
    TooLarge(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("password hashing: {0}")]
    Password(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: &str, message: impl Into<String>) -> Error {
        Error::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// Extension for query results: turns a unique-constraint violation into a 409 with a message
/// that says what already exists (realworld-axum-sqlx's `on_constraint`).
pub trait ResultExt<T> {
    fn on_unique_violation(self, message: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for Result<T, E> {
    fn on_unique_violation(self, message: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| match e.into() {
            Error::Database(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                Error::Conflict(message())
            }
            other => other,
        })
    }
}
