//! Syslog: stream framing (RFC 6587), message parsing (RFC 3164, RFC 5424) and the step that
//! turns one received message into one record.
//!
//! A listener feeds datagrams (UDP) or framed messages ([`framing::Framer`], for TCP and TLS) to
//! [`decode`]. Every message becomes exactly one record: the gateway's event when a
//! [`gateways`](crate::gateways) parser recognises it, otherwise a raw record holding the bytes
//! exactly as received.

pub mod framing;
pub mod message;

pub use framing::{DEFAULT_MAX_FRAME, Framed, Framer};
pub use message::{Protocol, SyslogMessage, parse};

use khetnet_retention::record::Record;

use crate::Receipt;
use crate::gateways::{self, Line};

/// The `protocol` name raw syslog records carry.
pub const RAW_PROTOCOL: &str = "syslog";

/// Why a message was kept raw.
pub const REASON_NOT_UTF8: &str = "message is not valid UTF-8";
/// Why a message was kept raw.
pub const REASON_UNRECOGNISED: &str = "no gateway format recognised";
/// Why an oversized frame's head was kept raw.
pub const REASON_OVERSIZED: &str = "frame longer than the maximum; only its head was kept";

/// Turns one syslog message into the record to store.
///
/// The event time is the gateway line's own time when it has one (Squid), else the syslog
/// header's, else the receive time. Never fails: unrecognised or non-UTF-8 messages become raw
/// records with the bytes kept whole and the reason.
pub fn decode(data: &[u8], receipt: &Receipt) -> Record {
    let message = parse(data, receipt.receive_time);
    let header_time = message.timestamp;
    if !message.utf8 {
        return receipt.raw(header_time, RAW_PROTOCOL, data, Some(REASON_NOT_UTF8));
    }
    let line = Line {
        time: header_time.unwrap_or(receipt.receive_time),
        host: message.hostname.as_deref(),
        app: message.app.as_deref(),
        text: &message.msg,
    };
    match gateways::parse(&line) {
        Some(parsed) => receipt.record(parsed.event_time.or(header_time), parsed.body),
        None => receipt.raw(header_time, RAW_PROTOCOL, data, Some(REASON_UNRECOGNISED)),
    }
}

/// The record for the head of an oversized frame ([`Framed::Oversized`]).
pub fn oversized(head: &[u8], receipt: &Receipt) -> Record {
    receipt.raw(None, RAW_PROTOCOL, head, Some(REASON_OVERSIZED))
}
