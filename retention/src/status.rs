//! Status: what the store covers, each source's last record and gaps, holds, signing.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::batch::Content;
use crate::counters::Counters;
use crate::error::Result;
use crate::holds::{self, HoldState};
use crate::segment::Span;
use crate::store::Store;

/// A silence longer than this between a source's records is reported as a gap.
pub const GAP: SignedDuration = SignedDuration::from_hours(1);

/// One source's coverage.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    pub source: String,
    pub records: u64,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
    /// Silences longer than [`GAP`], between segments or within the live tail.
    pub gaps: Vec<(Timestamp, Timestamp)>,
}

/// The answer to `status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub records: u64,
    pub segments: u64,
    pub live_batches: u64,
    pub event: Span,
    pub receive: Span,
    pub days_covered: f64,
    pub retention_days: u32,
    /// Another process (the collector) holds the writer lock.
    pub writer_running: bool,
    pub last_signature: Option<Timestamp>,
    pub inbox_waiting: u64,
    pub sources: Vec<SourceStatus>,
    pub holds: Vec<HoldState>,
    pub purgeable_segments: u64,
    /// The collector's last counters snapshot (`counters.json`), when one was written.
    pub collector: Option<Counters>,
    /// How old that snapshot is, in seconds, by the store's clock.
    pub collector_age_secs: Option<f64>,
    /// Why the snapshot could not be read, when it could not.
    pub collector_problem: Option<String>,
}

impl Store {
    /// Summarises the store from segment footers and the live tail (no segment is decompressed).
    pub fn status(&self) -> Result<Status> {
        let view = self.view()?;
        let now = self.now();
        let mut event = Span::default();
        let mut receive = Span::default();
        let mut records = 0;
        // Per source: the receive spans in chain order, one per segment or live record.
        let mut spans: BTreeMap<String, (u64, Vec<Span>)> = BTreeMap::new();
        for s in &view.segments {
            records += s.index.records;
            for t in [s.index.event.min, s.index.event.max].into_iter().flatten() {
                event.add(t);
            }
            for t in [s.index.receive.min, s.index.receive.max]
                .into_iter()
                .flatten()
            {
                receive.add(t);
            }
            for (name, stat) in &s.index.sources {
                let e = spans.entry(name.clone()).or_default();
                e.0 += stat.records;
                e.1.push(stat.receive);
            }
        }
        let mut last_signature = None;
        for c in view.controls() {
            if let Content::Signature(s) = c {
                last_signature = Some(s.signed_at);
            }
        }
        for c in &view.live {
            if let Content::Records { records: rs } = &c.batch.content {
                for r in rs {
                    records += 1;
                    event.add(r.event_time);
                    receive.add(r.receive_time);
                    let e = spans.entry(r.source()).or_default();
                    e.0 += 1;
                    let mut one = Span::default();
                    one.add(r.receive_time);
                    e.1.push(one);
                }
            }
        }
        let sources = spans
            .into_iter()
            .map(|(source, (n, mut list))| {
                list.sort_by_key(|s| s.min);
                let mut gaps = Vec::new();
                let mut last: Option<Timestamp> = None;
                for s in &list {
                    if let (Some(prev), Some(min)) = (last, s.min)
                        && min.duration_since(prev) > GAP
                    {
                        gaps.push((prev, min));
                    }
                    last = match (last, s.max) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                }
                SourceStatus {
                    source,
                    records: n,
                    first: list.first().and_then(|s| s.min),
                    last,
                    gaps,
                }
            })
            .collect();
        let days_covered = match (receive.min, receive.max) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64() / 86_400.0,
            _ => 0.0,
        };
        let plan = holds::plan_purge(&view, now, self.options().retention_days);
        let (collector, collector_problem) = match Counters::read(self.dir()) {
            Ok(c) => (c, None),
            Err(e) => (None, Some(e.to_string())),
        };
        let collector_age_secs = collector
            .as_ref()
            .and_then(|c| c.written_at)
            .map(|t| now.duration_since(t).as_secs_f64());
        Ok(Status {
            records,
            segments: view.segments.len() as u64,
            live_batches: view.live.len() as u64,
            event,
            receive,
            days_covered,
            retention_days: self.options().retention_days,
            writer_running: !self.is_writer() && crate::verify::writer_running(self.dir()),
            last_signature,
            inbox_waiting: view.inbox.len() as u64,
            sources,
            holds: holds::holds(&view, now),
            purgeable_segments: plan.purge.len() as u64,
            collector,
            collector_age_secs,
            collector_problem,
        })
    }
}
