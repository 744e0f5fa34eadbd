//! The collector: pure decoders that turn bytes received from school gateways into the records
//! the retention store keeps, and the network side ([`net`]) and file import ([`import`]) that
//! feed them and store what comes back.
//!
//! Invariant: the decoders (`syslog`, `relp`, `clock`, `gateways`, `radius`, `netflow`, `source`, `mac`)
//! do no I/O and use no tokio, so they can be fuzzed and table-tested. Only [`net`] and
//! [`import`] touch sockets, files and the store. Listeners (UDP, TCP, TLS, RELP, RADIUS,
//! NetFlow) receive bytes, hand them to a decoder and write what comes back. Every decoder is total: a malformed packet or line becomes a
//! [`Body::Raw`] record with the bytes kept whole and the
//! reason, never a panic and never an error that ends a connection.
//!
//! How a listener plugs in (it first asks [`source::AllowList::lookup`] whether the peer may
//! send, and fills a [`Receipt`] with the receive time, input, peer and school):
//!
//! - syslog over UDP: each datagram to [`syslog::decode`].
//! - syslog over TCP or TLS: one [`syslog::Framer`] per connection; each
//!   [`syslog::Framed::Message`] to [`syslog::decode`], each [`syslog::Framed::Oversized`] head
//!   to [`syslog::oversized`]; [`syslog::Framed::Incomplete`] means read more.
//! - RADIUS accounting: each datagram to [`radius::decode`] with the client's secret; answer
//!   with the [`radius::Outcome::Accepted`] response once the record is durable.
//! - NetFlow/IPFIX: one [`netflow::FlowDecoder`] per exporter address, kept in a map.

pub mod clock;
pub mod gateways;
pub mod import;
pub mod mac;
pub mod net;
pub mod netflow;
pub mod radius;
pub mod relp;
pub mod source;
pub mod syslog;

pub use net::{Collector, InputState, InputStatus, RunningCollector, Settings};

use jiff::Timestamp;
use khetnet_retention::record::{Body, Origin, Raw, Record};

/// How and when a listener received what it hands to a decoder: everything a record needs
/// besides what the bytes say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The store's clock when the bytes arrived.
    pub receive_time: Timestamp,
    /// The input and peer.
    pub origin: Origin,
    /// The peer's school, from the [`source::AllowList`].
    pub school: Option<String>,
}

impl Receipt {
    /// A record of `body`; the event time falls back to the receive time.
    pub fn record(&self, event_time: Option<Timestamp>, body: Body) -> Record {
        Record {
            event_time: event_time.unwrap_or(self.receive_time),
            receive_time: self.receive_time,
            origin: self.origin.clone(),
            school: self.school.clone(),
            body,
        }
    }

    /// A raw record keeping `data` exactly as received; a constant `reason` is not copied.
    pub fn raw(
        &self,
        event_time: Option<Timestamp>,
        protocol: &'static str,
        data: &[u8],
        reason: Option<impl Into<std::borrow::Cow<'static, str>>>,
    ) -> Record {
        self.record(
            event_time,
            Body::Raw(Raw {
                protocol: protocol.into(),
                data: data.to_vec(),
                reason: reason.map(Into::into),
            }),
        )
    }
}

/// Makes glibc's malloc give large freed buffers back to the system at once, as it does by
/// default until the first such free: it then raises its threshold for serving allocations with
/// their own mappings up to 32 MiB, and the collector's batches (a few MiB of records each,
/// allocated on one thread and freed on another) then stay in its arenas, fragmented: on a
/// loaded collector that doubled the resident memory. Call it first thing in `main`.
pub fn limit_heap_growth() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; it is called before any other
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Errors from the collector library.
///
/// Malformed input is not an error (it becomes a raw record); these are the caller's mistakes
/// and configuration problems, reported with what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An `--allow` entry that is not `ADDRESS[/PREFIX][=SCHOOL]`.
    #[error(
        "invalid source `{entry}`: {reason} (expected ADDRESS[/PREFIX][=SCHOOL], e.g. 10.1.0.0/16=1010100001)"
    )]
    InvalidSource { entry: String, reason: String },
    /// A `[collector]` value that cannot be used.
    #[error("{key} = {value}: not allowed; {allowed}")]
    Config {
        key: String,
        value: String,
        allowed: String,
    },
    /// A TLS certificate, key or CA file that cannot be used.
    #[error("TLS file {}: {reason}", path.display())]
    Tls {
        path: std::path::PathBuf,
        reason: String,
    },
    /// A file to import that cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The store refused a batch.
    #[error(transparent)]
    Store(#[from] khetnet_retention::Error),
}

/// The collector library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
