//! Verification: every segment, the live tail, the chain, the signatures and the purges.
//!
//! Each problem names its kind (altered, missing, reordered, truncated, bad signature,
//! unlawful purge) and its place (file, batch, byte), so the officer can say exactly what is
//! wrong with the evidence.

use std::collections::BTreeMap;
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::batch::{self, Content, Hash, Tombstone};
use crate::error::{Error, Result};
use crate::segment::{self, Chained, IndexBuilder, NamedEvents};
use crate::signing;
use crate::store::{self, HeadFile, MIN_RETENTION_DAYS, Meta};

/// What is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    Altered,
    Missing,
    Reordered,
    Truncated,
    BadSignature,
    UnlawfulPurge,
}

/// One thing wrong, and where.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub place: String,
    pub detail: String,
}

/// A lawful purge found in the chain.
#[derive(Debug, Clone, Serialize)]
pub struct Purged {
    pub segment: String,
    pub batches: (u64, u64),
    pub records: u64,
    pub purged_at: Timestamp,
    pub actor: String,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub intact: bool,
    pub public_key: String,
    pub segments: u64,
    pub batches: u64,
    pub records: u64,
    /// The last batch verified and its hash.
    pub head: Option<(u64, String)>,
    /// The last signature batch and when it was made.
    pub last_signature: Option<(u64, Timestamp)>,
    /// Batches after the last signature (chained but not yet signed).
    pub unsigned_batches: u64,
    pub purged: Vec<Purged>,
    /// A batch being written right now by the running writer (not a problem).
    pub write_in_progress: bool,
    pub problems: Vec<Problem>,
}

/// How to verify.
#[derive(Debug, Default, Clone)]
pub struct VerifyOptions {
    /// The key the officer trusts (their copy of `public-key.txt`); the store's own otherwise.
    pub public_key: Option<VerifyingKey>,
    /// Show a progress bar on the terminal.
    pub progress: bool,
}

struct Walk {
    key: VerifyingKey,
    expected: u64,
    prev: Hash,
    /// The chain is broken just before; the next batch starts it again.
    resync: bool,
    records: u64,
    batches: u64,
    last_signature: Option<(u64, Timestamp)>,
    head: Option<(u64, Hash)>,
    head_file: Option<HeadFile>,
    head_file_seen: bool,
    problems: Vec<Problem>,
}

impl Walk {
    fn problem(&mut self, kind: ProblemKind, place: impl Into<String>, detail: impl Into<String>) {
        self.problems.push(Problem {
            kind,
            place: place.into(),
            detail: detail.into(),
        });
    }

    fn batch(&mut self, place: &str, c: &Chained) {
        let b = &c.batch;
        if !self.resync && b.seq != self.expected {
            let kind = if b.seq < self.expected {
                ProblemKind::Reordered
            } else {
                ProblemKind::Missing
            };
            self.problem(
                kind,
                format!("{place} batch {}", b.seq),
                format!(
                    "batch {} stands where batch {} belongs",
                    b.seq, self.expected
                ),
            );
        } else if !self.resync && b.prev != self.prev {
            self.problem(
                ProblemKind::Altered,
                format!("{place} batch {}", b.seq),
                format!(
                    "does not chain to batch {}: the batch before it was altered, removed or reordered",
                    b.seq.wrapping_sub(1)
                ),
            );
        }
        self.resync = false;
        if let Content::Signature(s) = &b.content {
            let ok = signing::verify_hex(&self.key, &s.message(), &s.sig);
            if !ok {
                self.problem(
                    ProblemKind::BadSignature,
                    format!("{place} batch {}", b.seq),
                    "the head signature does not verify with the trusted public key",
                );
            } else if s.head_seq + 1 != b.seq
                || s.head_hash != b.prev
                || s.records != b.first_record
            {
                self.problem(
                    ProblemKind::Altered,
                    format!("{place} batch {}", b.seq),
                    format!(
                        "the signature covers batch {}, not the batch before it",
                        s.head_seq
                    ),
                );
            }
            self.last_signature = Some((b.seq, s.signed_at));
        }
        if let Content::Tombstone(t) = &b.content {
            self.tombstone_signature(place, t);
        }
        if let Some(h) = &self.head_file
            && h.seq == b.seq
        {
            self.head_file_seen = true;
            if h.hash != c.hash {
                self.problem(
                    ProblemKind::Altered,
                    format!("{place} batch {}", b.seq),
                    "differs from the batch head.json records as signed",
                );
            }
        }
        self.expected = b.seq + 1;
        self.prev = c.hash;
        self.records = self.records.max(b.first_record + b.content.record_count());
        self.batches += 1;
        self.head = Some((b.seq, c.hash));
    }

    fn tombstone_signature(&mut self, place: &str, t: &Tombstone) {
        if !signing::verify_hex(&self.key, &t.message(), &t.sig) {
            self.problem(
                ProblemKind::BadSignature,
                place.to_string(),
                format!(
                    "the tombstone of {} is not signed by the store key",
                    t.segment
                ),
            );
        }
    }
}

/// Verifies the store in `dir`.
///
/// # Errors
/// Only when the store cannot be read at all; damage is reported in [`Report::problems`].
pub fn verify(dir: &Path, opts: &VerifyOptions) -> Result<Report> {
    let meta_path = dir.join(store::META_FILE);
    let meta: Meta =
        serde_json::from_slice(&std::fs::read(&meta_path).map_err(|e| Error::io(&meta_path, e))?)
            .map_err(|e| Error::Corrupt {
            path: meta_path.clone(),
            reason: e.to_string(),
        })?;
    let mut problems = Vec::new();
    let key = match &opts.public_key {
        Some(k) => {
            if hex::encode(k.to_bytes()) != meta.public_key {
                problems.push(Problem {
                    kind: ProblemKind::BadSignature,
                    place: "store.json".into(),
                    detail: "the store names a different public key than the one you trust".into(),
                });
            }
            *k
        }
        None => signing::parse_public(&meta.public_key).map_err(|reason| Error::Key {
            path: meta_path,
            reason,
        })?,
    };
    let head_file: Option<HeadFile> = match std::fs::read(dir.join(store::HEAD_FILE)) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(h) => Some(h),
            Err(e) => {
                problems.push(Problem {
                    kind: ProblemKind::Altered,
                    place: "head.json".into(),
                    detail: format!("does not parse: {e}"),
                });
                None
            }
        },
        Err(_) => None,
    };
    let mut w = Walk {
        key,
        expected: 0,
        prev: batch::GENESIS,
        resync: false,
        records: 0,
        batches: 0,
        last_signature: None,
        head: None,
        head_file,
        head_file_seen: false,
        problems,
    };
    if let Some(h) = w.head_file.clone()
        && !signing::verify_hex(&w.key, &h.signature.message(), &h.signature.sig)
    {
        w.problem(
            ProblemKind::BadSignature,
            "head.json",
            "the signed head does not verify with the trusted public key",
        );
    }

    let segs = segment::list(&dir.join(store::SEGMENTS_DIR))?;
    let live_path = dir.join(store::LIVE_FILE);
    let live_bytes = std::fs::read(&live_path).unwrap_or_default();
    let total: u64 = segs
        .iter()
        .map(|(_, _, p)| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum::<u64>()
        + live_bytes.len() as u64;
    let bar = progress_bar(opts.progress, total);

    // Tombstones stand for purged segments; they may sit anywhere later in the chain or in the
    // inbox, so gather them first.
    let mut indexes = Vec::new();
    let mut tombstones: BTreeMap<u64, Tombstone> = BTreeMap::new();
    let collect = |b: &Content, t: &mut BTreeMap<u64, Tombstone>| {
        if let Content::Tombstone(x) = b {
            t.insert(x.first_seq, x.clone());
        }
    };
    for (a, b, path) in &segs {
        let idx = segment::read_index(path);
        if let Ok(idx) = &idx {
            for c in &idx.controls {
                collect(&c.content, &mut tombstones);
            }
        }
        indexes.push((*a, *b, path.clone(), idx));
    }
    let live_scan = store::scan_live(&live_bytes);
    for c in &live_scan.batches {
        collect(&c.batch.content, &mut tombstones);
    }
    for (path, entry) in store::read_inbox(dir)? {
        match entry {
            Ok(e) => {
                if let Content::Tombstone(t) = &e.content {
                    w.tombstone_signature(&format!("inbox/{}", file_name(&path)), t);
                }
                collect(&e.content, &mut tombstones);
            }
            Err(reason) => w.problem(
                ProblemKind::Altered,
                format!("inbox/{}", file_name(&path)),
                format!("an inbox entry does not parse: {reason}"),
            ),
        }
    }
    let mut purged = Vec::new();
    let mut segments = 0;

    let mut fill_gap = |w: &mut Walk, upto: u64, place: &str| {
        while w.expected < upto {
            let Some(t) = tombstones.get(&w.expected) else {
                let next = tombstones
                    .range(w.expected + 1..upto)
                    .next()
                    .map_or(upto, |(k, _)| *k);
                w.problem(
                    ProblemKind::Missing,
                    place.to_string(),
                    format!(
                        "batches {}..={} are missing: no segment holds them and no tombstone accounts for them (deleted?)",
                        w.expected,
                        next - 1
                    ),
                );
                w.expected = next;
                w.resync = true;
                continue;
            };
            if !w.resync && t.prev != w.prev {
                w.problem(
                    ProblemKind::Altered,
                    format!("tombstone of {}", t.segment),
                    "does not continue the chain from the batch before the purged segment",
                );
            }
            let floor = SignedDuration::from_hours(24 * i64::from(MIN_RETENTION_DAYS));
            if t.max_receive.is_some_and(|m| m + floor > t.purged_at) {
                w.problem(
                    ProblemKind::UnlawfulPurge,
                    format!("tombstone of {}", t.segment),
                    "the segment was purged before its records were 90 days old",
                );
            }
            purged.push(Purged {
                segment: t.segment.clone(),
                batches: (t.first_seq, t.last_seq),
                records: t.records,
                purged_at: t.purged_at,
                actor: t.actor.clone(),
            });
            w.prev = t.last_hash;
            w.resync = false;
            w.expected = t.last_seq + 1;
        }
    };

    for (name_first, name_last, path, idx) in indexes {
        let name = format!("segments/{}", file_name(&path));
        segments += 1;
        let idx = match idx {
            Ok(idx) => idx,
            Err(e) => {
                w.problem(ProblemKind::Altered, &name, e.to_string());
                w.resync = true;
                w.expected = w.expected.max(name_last + 1);
                continue;
            }
        };
        if (idx.first_seq, idx.last_seq) != (name_first, name_last) {
            w.problem(
                ProblemKind::Reordered,
                &name,
                format!(
                    "holds batches {}..={} but its name says {}..={} (renamed or swapped)",
                    idx.first_seq, idx.last_seq, name_first, name_last
                ),
            );
        }
        let named = segment::parse_name_events(&file_name(&path)).map(|(_, _, e)| e);
        if let Some(NamedEvents::Range(..) | NamedEvents::None) = named {
            let actual = segment::named_events(&idx.event)
                .map_or(NamedEvents::None, |(a, b)| NamedEvents::Range(a, b));
            if named != Some(actual) {
                w.problem(
                    ProblemKind::Altered,
                    &name,
                    format!(
                        "its name gives event times {} but its footer {} (renamed? searches could miss records)",
                        shown_named(named.unwrap_or(NamedEvents::Unknown)),
                        shown_named(actual)
                    ),
                );
            }
        }
        fill_gap(&mut w, idx.first_seq, &name);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                w.problem(ProblemKind::Missing, &name, e.to_string());
                continue;
            }
        };
        let mut builder = IndexBuilder::default();
        let mut blocks = Vec::new();
        let mut readable = true;
        for block in &idx.blocks {
            match segment::read_block(&mut file, &path, block) {
                Ok(batches) => {
                    for c in &batches {
                        w.batch(&name, c);
                        builder.add(c);
                    }
                    blocks.push(segment::block_index(block.offset, block.len, &batches));
                }
                Err(e) => {
                    readable = false;
                    w.problem(ProblemKind::Altered, &name, e.to_string());
                    w.resync = true;
                    w.expected = w.expected.max(block.last_seq + 1);
                }
            }
        }
        if readable {
            let mut stored = idx.clone();
            let mut recomputed = builder.finish(blocks);
            segment::same_places(&mut recomputed, &stored);
            if segment::read_filters(&path, &mut stored).is_err() || recomputed != stored {
                w.problem(
                    ProblemKind::Altered,
                    &name,
                    "the index (footer) differs from the contents: searches could miss records",
                );
            }
        }
        bar.inc(std::fs::metadata(&path).map_or(0, |m| m.len()));
    }

    // Purges at the end of the sealed chain.
    while let Some(t) = tombstones.get(&w.expected) {
        let upto = t.last_seq + 1;
        fill_gap(&mut w, upto, "end of the sealed chain");
    }

    // The live tail.
    let sealed_next = w.expected;
    let live: Vec<&Chained> = live_scan
        .batches
        .iter()
        .filter(|c| c.batch.seq >= sealed_next || w.resync)
        .collect();
    if let Some(first) = live.first() {
        fill_gap(&mut w, first.batch.seq, "live.log");
    }
    for c in live {
        w.batch(&format!("live.log byte {}:", c.offset), c);
    }
    let mut write_in_progress = false;
    if let Some((offset, reason)) = &live_scan.damaged {
        w.problem(
            ProblemKind::Altered,
            format!("live.log byte {offset}"),
            format!("{reason}, and intact batches follow"),
        );
    }
    if let Some(torn) = &live_scan.torn {
        if writer_running(dir) && torn.reason.contains("cut short") {
            write_in_progress = true;
        } else {
            w.problem(
                ProblemKind::Truncated,
                format!("live.log byte {}", torn.offset),
                format!(
                    "{} after batch {}; if the writer crashed, opening the store for writing cuts it back and keeps a copy",
                    torn.reason,
                    w.expected.wrapping_sub(1)
                ),
            );
        }
    }
    bar.inc(live_bytes.len() as u64);
    bar.finish_and_clear();

    if let Some(h) = w.head_file.clone()
        && !w.head_file_seen
        && h.seq >= w.expected
    {
        w.problem(
            ProblemKind::Truncated,
            "end of the chain",
            format!(
                "the chain ends at batch {} but head.json shows batch {} was signed at {}: batches {}..={} are gone",
                w.expected as i64 - 1,
                h.seq,
                h.signature.signed_at,
                w.expected,
                h.seq
            ),
        );
    }
    let unsigned = match (w.head, w.last_signature) {
        (Some((h, _)), Some((s, _))) => h - s,
        (Some((h, _)), None) => h + 1,
        _ => 0,
    };
    Ok(Report {
        intact: w.problems.is_empty(),
        public_key: hex::encode(w.key.to_bytes()),
        segments,
        batches: w.batches,
        records: w.records,
        head: w.head.map(|(s, h)| (s, hex::encode(h))),
        last_signature: w.last_signature,
        unsigned_batches: unsigned,
        purged,
        write_in_progress,
        problems: w.problems,
    })
}

/// True when some process holds the writer lock now.
pub fn writer_running(dir: &Path) -> bool {
    let Ok(f) = std::fs::File::open(dir.join(store::LOCK_FILE)) else {
        return false;
    };
    match f.try_lock() {
        Ok(()) => {
            let _ = f.unlock();
            false
        }
        Err(_) => true,
    }
}

fn shown_named(n: NamedEvents) -> String {
    match n {
        NamedEvents::Range(a, b) => format!("{a}..={b} (Unix seconds)"),
        NamedEvents::None => "none".into(),
        NamedEvents::Unknown => "unknown".into(),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(crate) fn progress_bar(show: bool, total: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{wide_bar} {bytes}/{total_bytes} {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
