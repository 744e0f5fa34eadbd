//! What the writer received, stored, refused and dropped, per input and per source, and its
//! last clock checks: a snapshot the writer (the collector) leaves in `counters.json` beside the
//! store, so that `status` can show it from another process.
//!
//! On-disk invariants (see `docs/STORE-FORMAT.md`): the file is replaced whole (temporary name,
//! fsync, rename, fsync of the directory), so a reader sees the old snapshot or the new one,
//! never a mix. It is operational telemetry, not evidence: it is outside the chain, `verify`
//! ignores it, and a missing or unreadable file only means `status` has no counters to show.
//! The store itself never writes it; this module only defines its shape, so the store stays
//! independent of the collector.

use std::net::IpAddr;
use std::path::Path;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil;

/// The file's name in the store directory.
pub const FILE: &str = "counters.json";

/// One writer's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Who wrote it (`khetnet-collector 0.1.0, pid 1234`).
    pub writer: String,
    /// When the writer started counting.
    pub started_at: Option<Timestamp>,
    /// When this snapshot was taken.
    pub written_at: Option<Timestamp>,
    /// True for the last snapshot, written once the writer stopped and had stored everything.
    pub stopped: bool,
    /// Per input (`syslog_udp`, `relp`, ...), with whether it listens.
    pub inputs: Vec<InputCounters>,
    /// Per input and allowed source.
    pub sources: Vec<SourceCounters>,
    /// Addresses refused (not in the allow-list, or a RADIUS client with no secret), per input;
    /// at most [`REFUSED_LISTED`] addresses are named, the input's `refused` counts them all.
    pub refused: Vec<Refused>,
    /// The last clock check against each NTP server.
    pub clock: Vec<ClockCheck>,
}

/// How many refused addresses a snapshot names at most (anyone can spoof a UDP source).
pub const REFUSED_LISTED: usize = 64;

/// The counts kept per input and per source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Messages, datagrams or RADIUS requests received from allowed sources.
    pub received: u64,
    /// Bytes received from allowed sources (after TLS).
    pub bytes: u64,
    /// Records made of them and handed to the store.
    pub records: u64,
    /// Records the store made durable (fsynced and chained).
    pub stored: u64,
    /// Of those stored, records no decoder understood, kept whole as `raw`.
    pub raw: u64,
    /// Input that failed a check (not UTF-8, oversized, a bad RADIUS authenticator, a failed TLS
    /// handshake); kept raw where there were bytes to keep.
    pub malformed: u64,
    /// Records lost because the store was behind (UDP only: it cannot be held back).
    pub dropped: u64,
    /// Datagrams or connections refused (per input only).
    pub refused: u64,
    /// Connections accepted (TCP, TLS, RELP).
    pub connections: u64,
}

impl Tally {
    /// Stored records some decoder understood.
    pub fn parsed(&self) -> u64 {
        self.stored.saturating_sub(self.raw)
    }
}

/// One input's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputCounters {
    pub input: String,
    /// `listening on ADDR`, `DOWN: why`, or `off`.
    pub state: String,
    #[serde(flatten)]
    pub tally: Tally,
}

/// One source's counters on one input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceCounters {
    pub input: String,
    pub source: IpAddr,
    pub school: Option<String>,
    /// When it was last heard.
    pub last_heard: Option<Timestamp>,
    #[serde(flatten)]
    pub tally: Tally,
}

/// A refused address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub input: String,
    pub source: IpAddr,
    pub count: u64,
    pub last: Option<Timestamp>,
}

/// One clock measurement against one NTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockCheck {
    pub server: String,
    pub at: Timestamp,
    /// The server's clock minus ours, in milliseconds; `None` when the check failed.
    pub offset_ms: Option<f64>,
    pub delay_ms: Option<f64>,
    /// Why there is no measurement.
    pub error: Option<String>,
    /// True when the offset is over the law's 10 ms.
    pub over_limit: bool,
}

impl Counters {
    /// Replaces `dir/counters.json` atomically.
    ///
    /// # Errors
    /// [`Error::Io`] (or `DiskFull`) when the file cannot be written.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|source| Error::Encode {
            what: "counters",
            source,
        })?;
        fsutil::write_atomic(&dir.join(FILE), &bytes)
    }

    /// Reads `dir/counters.json`; `Ok(None)` when there is none (no collector has run).
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read, [`Error::Invalid`] when it is not a snapshot.
    pub fn read(dir: &Path) -> Result<Option<Counters>> {
        let path = dir.join(FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::invalid("counters.json", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_file_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Counters::read(dir.path()).unwrap(), None);
        let counters = Counters {
            writer: "test".into(),
            stopped: true,
            inputs: vec![InputCounters {
                input: "syslog_tcp".into(),
                state: "listening on 127.0.0.1:514".into(),
                tally: Tally {
                    received: 3,
                    stored: 3,
                    raw: 1,
                    ..Tally::default()
                },
            }],
            ..Counters::default()
        };
        counters.write(dir.path()).unwrap();
        let back = Counters::read(dir.path()).unwrap().unwrap();
        assert_eq!(back, counters);
        assert_eq!(back.inputs[0].tally.parsed(), 2);
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        assert!(Counters::read(dir.path()).is_err());
    }
}
