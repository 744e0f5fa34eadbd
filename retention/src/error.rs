//! The library's one error type. Every message says what to do next, not only what failed.

use std::path::PathBuf;

/// Result with the store's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the store, each with the step that fixes it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "retention of {days} days is below the legal floor: the Computer Crime Act B.E. 2550 \
         (amended B.E. 2560), section 26, requires traffic data to be kept at least 90 days; \
         set retention_days to 90 or more"
    )]
    RetentionBelowFloor { days: u32 },

    #[error(
        "{path}: {source}; check that the path exists and that this user may read and write it"
    )]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{path}: the disk is full ({source}); nothing was written and no record was acknowledged; \
         free space (or purge expired segments) and the next append will succeed"
    )]
    DiskFull {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{0} is not a khetnet store (no store.json); create one with `khetnet-retention --store DIR init`"
    )]
    NotAStore(PathBuf),

    #[error("{0} already holds a store; open it instead of initialising it again")]
    AlreadyAStore(PathBuf),

    #[error(
        "another process (the collector?) holds the writer lock on {0}; \
         stop it or use the CLI, which drops its writes into the store's inbox for that writer"
    )]
    Locked(PathBuf),

    #[error(
        "the live tail {path} is damaged at byte {offset} ({reason}) and valid batches follow, \
         so this is not a torn write: run `khetnet-retention --store DIR verify`, keep the file as \
         evidence and restore the store from a copy"
    )]
    Damaged {
        path: PathBuf,
        offset: u64,
        reason: String,
    },

    #[error("{path}: {reason}; run `khetnet-retention --store DIR verify` to locate the damage")]
    Corrupt { path: PathBuf, reason: String },

    #[error(
        "the signing key in {path} is unreadable ({reason}); restore key.secret from your backup"
    )]
    Key { path: PathBuf, reason: String },

    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },

    #[error("no hold with id {0}; list the holds with `khetnet-retention --store DIR hold list`")]
    NoSuchHold(String),

    #[error("the export in {path} does not verify: {reason}")]
    Export { path: PathBuf, reason: String },

    #[error("cannot encode {what}: {source}; this is a bug, please report it")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns, telling a full disk apart.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if is_disk_full(&source) {
            Error::DiskFull { path, source }
        } else {
            Error::Io { path, source }
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            what,
            reason: reason.into(),
        }
    }
}

/// ENOSPC (28) or EDQUOT (122) on Linux: the caller should wait and retry.
pub(crate) fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(28) | Some(122))
}
