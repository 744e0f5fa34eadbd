//! The school agent: probes what its school's target list names (ICMP, TCP, HTTP(S), SNMP
//! v2c/v3 with printer supplies and UPS battery, its own host, ARP discovery of a network),
//! reports to the district server in batches, and spools reports on disk while the server is
//! unreachable.
//!
//! Entry points: [`enroll::enroll`] (exchange a one-time token for a credential),
//! [`run::run`] (the service loop) and [`run::check`] (probe once). `main.rs` only parses
//! arguments.
//!
//! Invariants:
//! - A sample is written to the on-disk spool before the agent tries to send it, and removed
//!   only after the server acknowledged the batch (after its commit). A batch keeps its id
//!   across retries and restarts, so the server's deduplication makes replays harmless.
//! - Nothing is probed that the server's target list does not name: there is no default sweep;
//!   a discovery sweep covers only the network its target names, at most a /22.
//! - The agent links neither axum nor sqlx: it stays small.

pub mod client;
pub mod discovery;
pub mod enroll;
pub mod host;
pub mod probe;
pub mod run;
pub mod service;
pub mod snmp;
pub mod spool;
pub mod state;

use std::path::PathBuf;

/// What went wrong, named so the operator knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    State { path: PathBuf, message: String },
    #[error("the server at {url}: {message}")]
    Server { url: String, message: String },
    #[error("the server refused the agent credential (revoked or unknown): enroll again")]
    Unauthorized,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// The agent's version, sent with every report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
