//! The collector's decoders: the pure functions that turn bytes received from school gateways
//! into the records the retention store keeps.
//!
//! Invariant: nothing in this crate's library does I/O or links tokio. Listeners (UDP, TCP, TLS,
//! RELP, RADIUS, NetFlow) are built on top: they receive bytes, hand them to a decoder here and
//! write what comes back. Every decoder is total: a malformed packet or line becomes a
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

pub mod gateways;
pub mod mac;
pub mod netflow;
pub mod radius;
pub mod source;
pub mod syslog;

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

    /// A raw record keeping `data` exactly as received.
    pub fn raw(
        &self,
        event_time: Option<Timestamp>,
        protocol: &str,
        data: &[u8],
        reason: Option<&str>,
    ) -> Record {
        self.record(
            event_time,
            Body::Raw(Raw {
                protocol: protocol.to_owned(),
                data: data.to_vec(),
                reason: reason.map(str::to_owned),
            }),
        )
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
}

/// The collector library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
