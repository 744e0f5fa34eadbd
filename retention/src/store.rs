//! The store: layout, the writer (append, sign, seal, recover) and the read view.
//!
//! # On-disk invariants (see `docs/STORE-FORMAT.md`)
//!
//! 1. Batches form one chain: batch `n` names the SHA-256 of batch `n - 1` in `prev`; batch 0
//!    names 32 zero bytes. Sequence numbers have no gaps except where a signed tombstone
//!    stands for a purged segment.
//! 2. `append` returns only after the batch's frame is written and `fsync`ed in `live.log`.
//!    Nothing is acknowledged that is not on disk.
//! 3. Only the last frame of `live.log` can be incomplete (a torn write): each batch is
//!    fsynced before the next one starts. Opening for writing cuts a torn tail back to the last
//!    whole batch, copies the cut bytes to `quarantine/` and reports it. Damage followed by
//!    intact batches is not a torn write and is refused.
//! 4. A segment is written to a temporary name, fsynced, renamed and the directory fsynced,
//!    before its batches are cut from `live.log` (the rest written to a new file, atomically);
//!    batches of `live.log` already in a segment (a crash between the two) are dropped on open.
//!    The segment is written on its own thread while appends go on; one seal at a time.
//!    A segment's name gives its batch range and the event-time range of its records (whole
//!    seconds, widened outward); readers choose segments for a time window by name alone, and
//!    verify checks the name against the contents.
//! 5. Segments are never modified; they are removed only by purge, after a signed tombstone
//!    for them is durable (in the chain, or in the inbox on its way to it).
//! 6. The chain head is signed (a `signature` batch) at every seal and whenever the last
//!    signature is older than `sign_interval` when the writer appends or ticks; `head.json`
//!    holds the latest signature so that cutting the chain short is noticed.
//! 7. One writer: the process holding the exclusive `flock` on `LOCK`. Other processes write
//!    only whole, fsynced files into `inbox/`, which the writer chains and then removes.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::batch::{self, Batch, Content, Decoded, Hash, Signature};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::record::{Access, Body, Input, Origin, Record};
use crate::segment::{self, Chained, SegmentIndex};
use crate::signing::Keys;

pub const META_FILE: &str = "store.json";
pub const LOCK_FILE: &str = "LOCK";
pub const LIVE_FILE: &str = "live.log";
pub const HEAD_FILE: &str = "head.json";
pub const SEGMENTS_DIR: &str = "segments";
pub const INBOX_DIR: &str = "inbox";
pub const QUARANTINE_DIR: &str = "quarantine";

/// The legal floor: Computer Crime Act B.E. 2550, section 26.
pub const MIN_RETENTION_DAYS: u32 = 90;

/// A time as shown to people: RFC 3339 in Asia/Bangkok (+07:00, no daylight saving).
pub fn shown(t: Timestamp) -> String {
    let bangkok = jiff::tz::Offset::constant(7);
    format!("{}", t.display_with_offset(bangkok))
}

/// Where "now" comes from; tests pass a fixed or stepping clock.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    pub fn system() -> Clock {
        Clock(Arc::new(Timestamp::now))
    }

    pub fn from_fn(f: impl Fn() -> Timestamp + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    pub fn fixed(t: Timestamp) -> Clock {
        Clock(Arc::new(move || t))
    }

    pub fn now(&self) -> Timestamp {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// How the store keeps, seals and signs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Days records are kept, counted from their receive time; never below 90.
    pub retention_days: u32,
    /// The live tail is sealed into a segment when it grows past this many bytes... The writer
    /// keeps the tail's batches decoded in memory and answers its own queries from them; other
    /// processes decode the whole tail for each query. Larger values cost readers' latency;
    /// smaller ones make more segments.
    pub seal_max_bytes: u64,
    /// ...or past this many records. This bounds the memory of the writer and of each reader:
    /// a record takes a few hundred bytes decoded (a flow about 350, a 200-byte syslog line kept
    /// raw about 600) but as little as 2 bytes in `live.log` when lines are alike, so
    /// `seal_max_bytes` alone would let the decoded tail grow to gigabytes.
    pub seal_max_records: u64,
    /// ...or when its oldest batch is older than this.
    pub seal_max_age: Duration,
    /// The chain head is signed at least this often while batches arrive (and on `tick`).
    pub sign_interval: Duration,
    pub clock: Clock,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            retention_days: MIN_RETENTION_DAYS,
            seal_max_bytes: 8 << 20,
            seal_max_records: 16 << 10,
            seal_max_age: Duration::from_secs(3600),
            sign_interval: Duration::from_secs(60),
            clock: Clock::system(),
        }
    }
}

impl Options {
    /// Refuses a retention below the legal floor.
    pub fn validate(&self) -> Result<()> {
        if self.retention_days < MIN_RETENTION_DAYS {
            return Err(Error::RetentionBelowFloor {
                days: self.retention_days,
            });
        }
        Ok(())
    }
}

/// `store.json`: what this directory is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub format: String,
    pub created: Timestamp,
    pub public_key: String,
    /// The longest retention any opener asked for: every later opener keeps at least this.
    #[serde(default)]
    pub retention_days: u32,
}

const FORMAT: &str = "khetnet-retention/2";

/// `head.json`: the latest head signature and where it sits in the chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadFile {
    /// The signature batch.
    pub seq: u64,
    #[serde(with = "batch::hex_hash")]
    pub hash: Hash,
    pub signature: Signature,
}

/// What `append` tells the caller once the batch is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    pub records: u64,
    /// Where the batch sits in the chain, when this process is the writer.
    pub chained: Option<Position>,
    /// The inbox file holding the batch, when another process is the writer.
    pub queued: Option<PathBuf>,
}

/// A batch's place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Position {
    pub batch: u64,
    pub first_record: u64,
    pub hash: String,
}

/// A torn tail cut back on open.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// Bytes removed from the end of `live.log`.
    pub cut_bytes: u64,
    /// Where the cut starts.
    pub offset: u64,
    /// The last whole batch kept.
    pub after_batch: Option<u64>,
    pub reason: String,
    /// A copy of the removed bytes.
    pub saved_to: PathBuf,
}

impl std::fmt::Display for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cut a torn tail of {} bytes at byte {} of live.log ({}), after batch {}; the bytes are kept in {}",
            self.cut_bytes,
            self.offset,
            self.reason,
            self.after_batch.map_or("none".into(), |b| b.to_string()),
            self.saved_to.display()
        )
    }
}

/// A write from a process that is not the writer, waiting in `inbox/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxEntry {
    pub id: String,
    pub content: Content,
}

/// A batch encoded ahead of its place in the chain by [`Store::prepare`], for
/// [`Store::try_append_prepared`].
pub struct Prepared {
    written_at: Timestamp,
    content: Content,
    /// The body after its chain header ([`batch::encode_content`]).
    encoded: Vec<u8>,
}

impl Prepared {
    /// The records it holds.
    pub fn records(&self) -> u64 {
        self.content.record_count()
    }

    /// The records, for a caller who gives up on storing them.
    pub fn into_records(self) -> Vec<Record> {
        self.content.into_records()
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("written_at", &self.written_at)
            .field("records", &self.records())
            .field("encoded", &self.encoded.len())
            .finish()
    }
}

struct Writer {
    _lock: File,
    live: File,
    live_len: u64,
    dirty: bool,
    live_since: Option<Timestamp>,
    /// The batches of `live.log`, as written: sealing indexes them without decoding the file.
    live_batches: Vec<Arc<Chained>>,
    /// The records in `live_batches`.
    live_records: u64,
    /// `Chained::offset` of the writer's batches counts from where `live.log` started when the
    /// writer opened it; the file has since lost this many bytes at its start to seals.
    live_shift: u64,
    /// A seal running on its own thread, if any.
    sealing: Option<Sealing>,
    /// A sealed prefix of `live.log` (bytes, batches) not yet cut because cutting failed (a
    /// full disk): cut before anything else is sealed, so that no two segments overlap.
    cut_pending: Option<(u64, usize)>,
    next_seq: u64,
    next_record: u64,
    head: Hash,
    last_signed: Option<Timestamp>,
    head_is_signature: bool,
    last_absorb: Option<Timestamp>,
    #[cfg(test)]
    fail_after: Option<usize>,
}

/// A seal on its own thread: it writes the segment of the first `batches` batches of the tail
/// (the first `upto` bytes of `live.log`); the writer then cuts them from `live.log`.
struct Sealing {
    upto: u64,
    batches: usize,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl Drop for Writer {
    /// Lets a running seal finish: its segment is then complete, and the next opener drops the
    /// batches of `live.log` that it holds (as after a crash between the two steps).
    fn drop(&mut self) {
        if let Some(s) = self.sealing.take() {
            let _ = s.thread.join();
        }
    }
}

/// A store directory, opened either as the writer or, when another process writes, as a
/// client whose writes go through the inbox.
pub struct Store {
    dir: PathBuf,
    opts: Options,
    keys: Keys,
    writer: Option<Mutex<Writer>>,
    /// Batches cut from the live tail by a seal, freed by the next [`Store::prepare`] (or
    /// append, or tick) outside the writer's lock: freeing thousands of records takes
    /// milliseconds that the appending thread would otherwise spend holding the lock.
    sealed: Mutex<Vec<Arc<Chained>>>,
    recovery: Option<Recovery>,
}

impl Store {
    /// Creates the layout and the signing key in `dir` (which may exist but must hold no store).
    ///
    /// # Errors
    /// A retention below 90 days, an existing store, or a directory that cannot be written.
    pub fn init(dir: impl AsRef<Path>, opts: &Options) -> Result<Store> {
        opts.validate()?;
        let dir = dir.as_ref();
        fsutil::create_dir(dir)?;
        if dir.join(META_FILE).exists() {
            return Err(Error::AlreadyAStore(dir.to_owned()));
        }
        for sub in [SEGMENTS_DIR, INBOX_DIR, QUARANTINE_DIR] {
            fsutil::create_dir(&dir.join(sub))?;
        }
        let keys = Keys::create(dir)?;
        fsutil::write_atomic(&dir.join(LIVE_FILE), b"")?;
        let meta = Meta {
            format: FORMAT.into(),
            created: opts.clock.now(),
            public_key: keys.public_hex(),
            retention_days: opts.retention_days,
        };
        let json = serde_json::to_vec_pretty(&meta).map_err(|source| Error::Encode {
            what: "store.json",
            source,
        })?;
        fsutil::write_atomic(&dir.join(META_FILE), &json)?;
        Store::open(dir, opts)
    }

    /// Opens the store as its writer, cutting back a torn tail (see [`Store::recovery`]).
    ///
    /// # Errors
    /// [`Error::Locked`] when another process writes; [`Error::Damaged`] when the live tail is
    /// damaged in a way a crash cannot cause.
    pub fn open(dir: impl AsRef<Path>, opts: &Options) -> Result<Store> {
        let (store, locked) = Store::open_inner(dir.as_ref(), opts, true)?;
        if locked {
            return Err(Error::Locked(store.dir));
        }
        Ok(store)
    }

    /// Opens the store, creating it first when `dir` holds none.
    pub fn open_or_init(dir: impl AsRef<Path>, opts: &Options) -> Result<Store> {
        if dir.as_ref().join(META_FILE).exists() {
            Store::open(dir, opts)
        } else {
            Store::init(dir, opts)
        }
    }

    /// Opens the store as its writer when no other process is, else as an inbox client:
    /// what the CLI does, so that it works beside a running collector.
    pub fn open_shared(dir: impl AsRef<Path>, opts: &Options) -> Result<Store> {
        Ok(Store::open_inner(dir.as_ref(), opts, true)?.0)
    }

    /// Opens the store for reading only; never takes the lock, never writes.
    pub fn open_read(dir: impl AsRef<Path>, opts: &Options) -> Result<Store> {
        Ok(Store::open_inner(dir.as_ref(), opts, false)?.0)
    }

    fn open_inner(dir: &Path, opts: &Options, write: bool) -> Result<(Store, bool)> {
        opts.validate()?;
        let meta_path = dir.join(META_FILE);
        if !meta_path.exists() {
            return Err(Error::NotAStore(dir.to_owned()));
        }
        let keys = Keys::load(dir)?;
        let mut meta: Meta = serde_json::from_slice(
            &std::fs::read(&meta_path).map_err(|e| Error::io(&meta_path, e))?,
        )
        .map_err(|e| Error::Corrupt {
            path: meta_path.clone(),
            reason: format!("store.json does not parse: {e}"),
        })?;
        if meta.format != FORMAT {
            return Err(Error::Corrupt {
                path: meta_path,
                reason: format!(
                    "the store is in format {}, this version reads {FORMAT}: open it with the version that wrote it",
                    meta.format
                ),
            });
        }
        // A CLI run with the default 90 days must not purge what the collector keeps longer.
        let mut opts = opts.clone();
        let raise = opts.retention_days > meta.retention_days;
        opts.retention_days = opts.retention_days.max(meta.retention_days);
        let mut store = Store {
            dir: dir.to_owned(),
            opts,
            keys,
            writer: None,
            sealed: Mutex::new(Vec::new()),
            recovery: None,
        };
        if !write {
            return Ok((store, false));
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok((store, true)),
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        if raise {
            meta.retention_days = store.opts.retention_days;
            let json = serde_json::to_vec_pretty(&meta).map_err(|source| Error::Encode {
                what: "store.json",
                source,
            })?;
            fsutil::write_atomic(&meta_path, &json)?;
        }
        let (writer, recovery) = store.recover(lock)?;
        store.writer = Some(Mutex::new(writer));
        store.recovery = recovery;
        Ok((store, false))
    }

    /// Rebuilds the writer's state from disk, cutting a torn tail.
    fn recover(&self, lock: File) -> Result<(Writer, Option<Recovery>)> {
        let segs = segment::list(&self.dir.join(SEGMENTS_DIR))?;
        let mut next_seq = 0;
        let mut next_record = 0;
        let mut head = batch::GENESIS;
        let mut last_signed = None;
        let mut head_is_signature = false;
        if let Some((_, _, path)) = segs.last() {
            let idx = segment::read_index(path)?;
            next_seq = idx.last_seq + 1;
            next_record = idx.first_record + idx.records;
            head = idx.last_hash;
            for c in &idx.controls {
                if let Content::Signature(s) = &c.content {
                    last_signed = Some(s.signed_at);
                    head_is_signature = c.seq == idx.last_seq;
                }
            }
        }
        let sealed_next = next_seq;
        let live_path = self.dir.join(LIVE_FILE);
        let bytes = read_all(&live_path)?;
        let scan = scan_live(&bytes);
        if let Some((offset, reason)) = scan.damaged {
            return Err(Error::Damaged {
                path: live_path,
                offset,
                reason,
            });
        }
        let mut recovery = None;
        if let Some(tail) = &scan.torn {
            let saved_to = self.dir.join(QUARANTINE_DIR).join(format!(
                "torn-{}-at-{}.bin",
                self.opts.clock.now().as_millisecond(),
                tail.offset
            ));
            fsutil::create_dir(&self.dir.join(QUARANTINE_DIR))?;
            fsutil::write_atomic(&saved_to, &bytes[tail.offset as usize..])?;
            recovery = Some(Recovery {
                cut_bytes: bytes.len() as u64 - tail.offset,
                offset: tail.offset,
                after_batch: scan.batches.last().map(|c| c.batch.seq),
                reason: tail.reason.clone(),
                saved_to,
            });
        }
        let stale = scan
            .batches
            .iter()
            .take_while(|c| c.batch.seq < sealed_next)
            .count();
        let mut live_since = None;
        for c in &scan.batches[stale..] {
            if c.batch.seq != next_seq || c.batch.prev != head {
                return Err(Error::Damaged {
                    path: live_path,
                    offset: c.offset,
                    reason: format!(
                        "batch {} does not follow batch {} in the chain",
                        c.batch.seq,
                        next_seq.wrapping_sub(1)
                    ),
                });
            }
            live_since.get_or_insert(c.batch.written_at);
            next_seq += 1;
            next_record += c.batch.content.record_count();
            head = c.hash;
            head_is_signature = matches!(c.batch.content, Content::Signature(_));
            if let Content::Signature(s) = &c.batch.content {
                last_signed = Some(s.signed_at);
            }
        }
        let good_len = scan.good_len;
        let keep_from = scan.batches.get(stale).map_or(good_len, |c| c.offset);
        let live_batches: Vec<Arc<Chained>> = scan
            .batches
            .into_iter()
            .skip(stale)
            .map(|mut c| {
                c.offset -= keep_from;
                Arc::new(c)
            })
            .collect();
        if stale > 0 {
            fsutil::write_atomic(&live_path, &bytes[keep_from as usize..good_len as usize])?;
        } else if recovery.is_some() {
            let f = OpenOptions::new()
                .write(true)
                .open(&live_path)
                .map_err(|e| Error::io(&live_path, e))?;
            f.set_len(good_len)
                .and_then(|_| f.sync_all())
                .map_err(|e| Error::io(&live_path, e))?;
        }
        let live = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&live_path)
            .map_err(|e| Error::io(&live_path, e))?;
        let live_len = live.metadata().map_err(|e| Error::io(&live_path, e))?.len();
        Ok((
            Writer {
                _lock: lock,
                live,
                live_len,
                dirty: false,
                live_since,
                live_records: live_batches
                    .iter()
                    .map(|c| c.batch.content.record_count())
                    .sum(),
                live_batches,
                live_shift: 0,
                sealing: None,
                cut_pending: None,
                next_seq,
                next_record,
                head,
                last_signed,
                head_is_signature,
                last_absorb: None,
                #[cfg(test)]
                fail_after: None,
            },
            recovery,
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// True when this process holds the writer lock.
    pub fn is_writer(&self) -> bool {
        self.writer.is_some()
    }

    /// The torn tail cut back when this store was opened, if there was one.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    pub fn now(&self) -> Timestamp {
        self.opts.clock.now()
    }

    fn lock_writer(&self) -> Option<MutexGuard<'_, Writer>> {
        self.writer
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Appends one batch of records and returns once it is fsynced and chained.
    ///
    /// Safe to call from several threads at once. After the batch is durable the writer also
    /// chains waiting inbox entries, signs the head and seals when due.
    ///
    /// # Errors
    /// [`Error::DiskFull`] when the disk is full: nothing is acknowledged, the tail is cut back
    /// to where it was, and a later append succeeds once space returns.
    pub fn append(&self, records: Vec<Record>) -> Result<Receipt> {
        self.try_append(records).map_err(|(error, _)| error)
    }

    /// [`Store::append`], handing the records back with the error when they were not stored,
    /// so that a caller who retries (the collector, while the disk is full) keeps no copy.
    ///
    /// # Errors
    /// As [`Store::append`].
    pub fn try_append(&self, records: Vec<Record>) -> Result<Receipt, (Error, Vec<Record>)> {
        let count = records.len() as u64;
        match self.write_or_return(Content::Records { records }) {
            Ok(mut r) => {
                r.records = count;
                Ok(r)
            }
            Err((error, content)) => Err((error, content.into_records())),
        }
    }

    /// Writes a batch of any content: into the chain when this process is the writer, else
    /// into the inbox.
    pub(crate) fn write_content(&self, content: Content) -> Result<Receipt> {
        self.write_or_return(content).map_err(|(error, _)| error)
    }

    /// [`Store::write_content`], handing the content back when it was not written.
    fn write_or_return(&self, content: Content) -> Result<Receipt, (Error, Box<Content>)> {
        if self.writer.is_none() {
            return self.queue_or_return(content);
        }
        let prepared = match self.prepare_content(content) {
            Ok(p) => p,
            Err((error, content)) => return Err((error, content)),
        };
        self.commit(prepared)
            .map_err(|(error, p)| (error, Box::new(p.content)))
    }

    fn queue_or_return(&self, content: Content) -> Result<Receipt, (Error, Box<Content>)> {
        match self.queue(&content) {
            Ok(path) => Ok(Receipt {
                records: 0,
                chained: None,
                queued: Some(path),
            }),
            Err(error) => Err((error, Box::new(content))),
        }
    }

    /// Encodes `records` (columns, zstd: most of an append's work) without taking the writer's
    /// lock, so that a caller can encode its next batch while the previous one is written and
    /// fsynced. The batch's time is taken now; its place in the chain when it is appended.
    pub fn prepare(&self, records: Vec<Record>) -> Prepared {
        match self.prepare_content(Content::Records { records }) {
            Ok(p) => p,
            // Records encode without fail (only control contents go through JSON); should that
            // change, the append encodes them again and reports the error.
            Err((_, content)) => Prepared {
                written_at: self.now(),
                content: *content,
                encoded: Vec::new(),
            },
        }
    }

    fn prepare_content(&self, content: Content) -> Result<Prepared, (Error, Box<Content>)> {
        self.free_sealed();
        let written_at = self.now();
        match batch::encode_content(&content, written_at) {
            Ok(encoded) => Ok(Prepared {
                written_at,
                content,
                encoded,
            }),
            Err(error) => Err((error, Box::new(content))),
        }
    }

    /// Appends a batch encoded by [`Store::prepare`] and returns once it is fsynced and
    /// chained, as [`Store::append`]. Batches are chained in the order of these calls.
    ///
    /// # Errors
    /// As [`Store::append`]; the batch is handed back, still encoded, for a retry.
    pub fn try_append_prepared(
        &self,
        prepared: Prepared,
    ) -> Result<Receipt, (Error, Box<Prepared>)> {
        let count = prepared.records();
        if self.writer.is_none() {
            let Prepared {
                written_at,
                content,
                encoded,
            } = prepared;
            return self.queue_or_return(content).map_err(|(error, content)| {
                (
                    error,
                    Box::new(Prepared {
                        written_at,
                        content: *content,
                        encoded,
                    }),
                )
            });
        }
        let mut r = self.commit(prepared)?;
        r.records = count;
        Ok(r)
    }

    /// Chains a prepared batch (this process being the writer), then does the housekeeping.
    fn commit(&self, prepared: Prepared) -> Result<Receipt, (Error, Box<Prepared>)> {
        let mut w = self.lock_writer().expect("only called on the writer");
        let (seq, first_record, hash) = self.append_encoded(&mut w, prepared)?;
        // The batch is durable; what follows is housekeeping whose failure the next call retries.
        let now = self.now();
        let _ = self.maintain(&mut w, now, false);
        Ok(Receipt {
            records: 0,
            chained: Some(Position {
                batch: seq,
                first_record,
                hash: hex::encode(hash),
            }),
            queued: None,
        })
    }

    /// Frees the batches the last seal cut from the tail (see `Store::sealed`).
    fn free_sealed(&self) {
        let sealed = std::mem::take(&mut *self.sealed.lock().unwrap_or_else(|p| p.into_inner()));
        drop(sealed);
    }

    /// Chains waiting inbox entries, signs the head and seals when due. The collector calls it
    /// every few seconds so that an idle store is still signed every `sign_interval`.
    pub fn tick(&self) -> Result<()> {
        if let Some(mut w) = self.lock_writer() {
            let now = self.now();
            self.maintain(&mut w, now, true)?;
        }
        self.free_sealed();
        Ok(())
    }

    /// Signs the head now (when the last batch is not already a signature).
    pub fn sign_now(&self) -> Result<()> {
        if let Some(mut w) = self.lock_writer() {
            let now = self.now();
            self.sign_locked(&mut w, now)?;
        }
        Ok(())
    }

    /// Seals the live tail into a segment now (signing it first).
    pub fn seal_now(&self) -> Result<()> {
        if let Some(mut w) = self.lock_writer() {
            let now = self.now();
            self.absorb_inbox(&mut w, now)?;
            self.finish_seal(&mut w, true)?;
            self.start_seal(&mut w, now)?;
            self.finish_seal(&mut w, true)?;
        }
        Ok(())
    }

    fn maintain(&self, w: &mut Writer, now: Timestamp, force_absorb: bool) -> Result<()> {
        // Appends go on while a seal runs; when they outrun it (a starved seal thread on a busy
        // machine), wait for it rather than let the tail held in memory grow without bound.
        let behind = w.live_records >= self.opts.seal_max_records.max(1).saturating_mul(2);
        self.finish_seal(w, behind)?;
        let absorb_due = force_absorb
            || w.last_absorb
                .is_none_or(|t| now.duration_since(t) >= SignedDuration::from_secs(1));
        if absorb_due {
            self.absorb_inbox(w, now)?;
            w.last_absorb = Some(now);
        }
        let age = |t: Option<Timestamp>, limit: Duration| {
            t.is_none_or(|t| {
                now.duration_since(t)
                    >= SignedDuration::try_from(limit).unwrap_or(SignedDuration::MAX)
            })
        };
        let seal_due = w.live_len >= self.opts.seal_max_bytes
            || w.live_records >= self.opts.seal_max_records
            || (w.live_since.is_some() && age(w.live_since, self.opts.seal_max_age));
        if seal_due && w.sealing.is_none() {
            return self.start_seal(w, now);
        }
        if age(w.last_signed, self.opts.sign_interval) {
            self.sign_locked(w, now)?;
        }
        Ok(())
    }

    /// Chains `content` at the end of `live.log`; when it could not be written, hands it back.
    fn append_locked(
        &self,
        w: &mut Writer,
        content: Content,
        now: Timestamp,
    ) -> Result<(u64, u64, Hash), (Error, Box<Content>)> {
        let encoded = match batch::encode_content(&content, now) {
            Ok(encoded) => encoded,
            Err(error) => return Err((error, Box::new(content))),
        };
        let prepared = Prepared {
            written_at: now,
            content,
            encoded,
        };
        self.append_encoded(w, prepared)
            .map_err(|(error, p)| (error, Box::new(p.content)))
    }

    /// Chains an encoded batch at the end of `live.log`: the frame gets the batch's place in
    /// the chain, its hash, and is written and fsynced. When it could not be, hands it back.
    fn append_encoded(
        &self,
        w: &mut Writer,
        mut p: Prepared,
    ) -> Result<(u64, u64, Hash), (Error, Box<Prepared>)> {
        let live_path = self.dir.join(LIVE_FILE);
        if w.dirty {
            if let Err(e) = w.live.set_len(w.live_len).and_then(|_| w.live.sync_all()) {
                return Err((Error::io(&live_path, e), Box::new(p)));
            }
            w.dirty = false;
        }
        if p.encoded.is_empty() {
            // `prepare` could not encode it: encode again, reporting why.
            match batch::encode_content(&p.content, p.written_at) {
                Ok(encoded) => p.encoded = encoded,
                Err(error) => return Err((error, Box::new(p))),
            }
        }
        let records = p.content.record_count();
        let (seq, first_record) = (w.next_seq, w.next_record);
        let (frame, hash) = match batch::frame(seq, &w.head, p.written_at, first_record, &p.encoded)
        {
            Ok(framed) => framed,
            Err(error) => return Err((error, Box::new(p))),
        };
        if let Err(e) = self.write_frame(w, &frame) {
            // Cut back what may have been written so that nothing half-written stays.
            w.dirty = w
                .live
                .set_len(w.live_len)
                .and_then(|_| w.live.sync_all())
                .is_err();
            return Err((Error::io(&live_path, e), Box::new(p)));
        }
        let Prepared {
            written_at,
            content,
            ..
        } = p;
        let b = Batch {
            seq,
            prev: w.head,
            written_at,
            first_record,
            content,
        };
        w.live_len += frame.len() as u64;
        w.next_seq += 1;
        w.next_record += records;
        w.live_records += records;
        w.head = hash;
        w.live_since.get_or_insert(written_at);
        w.head_is_signature = matches!(b.content, Content::Signature(_));
        w.live_batches.push(Arc::new(Chained {
            batch: b,
            hash,
            offset: w.live_shift + w.live_len - frame.len() as u64,
            len: frame.len() as u64,
        }));
        Ok((seq, first_record, hash))
    }

    fn write_frame(&self, w: &mut Writer, frame: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        #[cfg(test)]
        if let Some(budget) = w.fail_after {
            let n = budget.min(frame.len());
            w.live.write_all_at(&frame[..n], w.live_len)?;
            w.fail_after = Some(budget - n);
            if n < frame.len() {
                return Err(std::io::Error::from_raw_os_error(28));
            }
        }
        w.live.write_all_at(frame, w.live_len)?;
        w.live.sync_data()
    }

    fn sign_locked(&self, w: &mut Writer, now: Timestamp) -> Result<()> {
        if w.next_seq == 0 || w.head_is_signature {
            w.last_signed = Some(now);
            return Ok(());
        }
        let mut sig = Signature {
            head_seq: w.next_seq - 1,
            head_hash: w.head,
            records: w.next_record,
            signed_at: now,
            sig: String::new(),
        };
        sig.sig = self.keys.sign_hex(&sig.message());
        let (seq, _, hash) = self
            .append_locked(w, Content::Signature(sig.clone()), now)
            .map_err(|(error, _)| error)?;
        w.last_signed = Some(now);
        let head = HeadFile {
            seq,
            hash,
            signature: sig,
        };
        let json = serde_json::to_vec_pretty(&head).map_err(|source| Error::Encode {
            what: "head.json",
            source,
        })?;
        fsutil::write_atomic(&self.dir.join(HEAD_FILE), &json)
    }

    /// Signs the head and starts sealing the tail on its own thread, so that appends go on
    /// meanwhile (they are durable in `live.log` already). [`Store::finish_seal`] completes it.
    fn start_seal(&self, w: &mut Writer, now: Timestamp) -> Result<()> {
        if w.live_len == 0 || w.sealing.is_some() || w.cut_pending.is_some() {
            return Ok(());
        }
        self.sign_locked(w, now)?;
        let batches = w.live_batches.clone();
        let (upto, shift, count) = (w.live_len, w.live_shift, batches.len());
        let dir = self.dir.clone();
        let thread = std::thread::Builder::new()
            .name("khetnet-seal".into())
            .spawn(move || seal_segment(&dir, upto, shift, &batches))
            .map_err(|e| Error::io(&self.dir, e))?;
        w.sealing = Some(Sealing {
            upto,
            batches: count,
            thread,
        });
        Ok(())
    }

    /// When the running seal is done (or, with `wait`, once it is), cuts the batches its
    /// segment holds from the start of `live.log`: the rest is written to a new `live.log`
    /// atomically, so a crash leaves either the old file (whose sealed batches the next opener
    /// drops) or the new one.
    fn finish_seal(&self, w: &mut Writer, wait: bool) -> Result<()> {
        if let Some(s) = w.sealing.take() {
            if !wait && !s.thread.is_finished() {
                w.sealing = Some(s);
                return Ok(());
            }
            s.thread.join().unwrap_or_else(|_| {
                Err(Error::Corrupt {
                    path: self.dir.join(LIVE_FILE),
                    reason: "the seal thread panicked; the tail stays unsealed".into(),
                })
            })?;
            w.cut_pending = Some((s.upto, s.batches));
        }
        let Some((upto, batches)) = w.cut_pending else {
            return Ok(());
        };
        let live_path = self.dir.join(LIVE_FILE);
        let mut rest = vec![0u8; (w.live_len - upto) as usize];
        {
            use std::os::unix::fs::FileExt;
            w.live
                .read_exact_at(&mut rest, upto)
                .map_err(|e| Error::io(&live_path, e))?;
        }
        fsutil::write_atomic(&live_path, &rest)?;
        w.live = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&live_path)
            .map_err(|e| Error::io(&live_path, e))?;
        w.cut_pending = None;
        w.live_len -= upto;
        w.live_shift += upto;
        w.dirty = false;
        let sealed: Vec<Arc<Chained>> = w.live_batches.drain(..batches).collect();
        w.live_records -= sealed
            .iter()
            .map(|c| c.batch.content.record_count())
            .sum::<u64>();
        self.sealed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(sealed);
        w.live_since = w.live_batches.first().map(|c| c.batch.written_at);
        Ok(())
    }

    fn absorb_inbox(&self, w: &mut Writer, now: Timestamp) -> Result<()> {
        for (path, entry) in read_inbox(&self.dir)? {
            match entry {
                Ok(entry) => {
                    self.append_locked(w, entry.content, now)
                        .map_err(|(error, _)| error)?;
                }
                Err(reason) => {
                    // Keep what cannot be read as evidence, out of the way of the next absorb.
                    let to = self.dir.join(QUARANTINE_DIR).join(format!(
                        "inbox-{}",
                        path.file_name().unwrap_or_default().to_string_lossy()
                    ));
                    let _ = reason;
                    std::fs::rename(&path, &to).map_err(|e| Error::io(&path, e))?;
                    continue;
                }
            }
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }

    /// Writes `content` durably into the inbox for the writer to chain.
    fn queue(&self, content: &Content) -> Result<PathBuf> {
        let now = self.now();
        let id = format!(
            "{:020}-{}-{:08x}",
            now.as_nanosecond(),
            std::process::id(),
            rand::random::<u32>()
        );
        let path = self.dir.join(INBOX_DIR).join(format!("{id}.json"));
        // An `InboxEntry`, serialised from borrowed parts.
        #[derive(Serialize)]
        struct Entry<'a> {
            id: &'a str,
            content: &'a Content,
        }
        let json =
            serde_json::to_vec(&Entry { id: &id, content }).map_err(|source| Error::Encode {
                what: "inbox entry",
                source,
            })?;
        fsutil::write_atomic(&path, &json)?;
        Ok(path)
    }

    /// Records who did what to the store, as an `access` record in the chain.
    pub fn log_access(&self, actor: &str, action: &str, detail: &str) -> Result<Receipt> {
        let now = self.now();
        self.append(vec![Record {
            event_time: now,
            receive_time: now,
            origin: Origin {
                input: Input::Store,
                peer: None,
                import_sha256: None,
            },
            school: None,
            body: Body::Access(Access {
                actor: actor.into(),
                action: action.into(),
                detail: detail.into(),
            }),
        }])
    }

    /// Reads what is on disk now, consistently even while a writer seals.
    ///
    /// The writer answers for the live tail from the batches it holds in memory (what it wrote
    /// and fsynced), so a query does not read and decode `live.log` again; other processes
    /// read it.
    pub fn view(&self) -> Result<View> {
        self.view_in(None)
    }

    /// Like [`Store::view`], with only the segments whose names' event-time range meets
    /// `[from, to]`: the footers of the others are not read.
    pub(crate) fn view_between(&self, from: Timestamp, to: Timestamp) -> Result<View> {
        self.view_in(Some((from, to)))
    }

    fn view_in(&self, window: Option<(Timestamp, Timestamp)>) -> Result<View> {
        let Some(w) = self.lock_writer() else {
            return View::load_in(&self.dir, window);
        };
        let live = w.live_batches.clone();
        drop(w);
        // A seal after the clone moved batches into a segment that the listing below sees.
        let segs = segment::list(&self.dir.join(SEGMENTS_DIR))?;
        let sealed_next = sealed_next(&segs);
        let segments = read_segments(segs, window)?;
        let inbox = read_inbox(&self.dir)?
            .into_iter()
            .filter_map(|(_, e)| e.ok())
            .collect();
        Ok(View {
            segments,
            live: live
                .into_iter()
                .filter(|c| c.batch.seq >= sealed_next)
                .collect(),
            live_torn: None,
            live_damaged: None,
            inbox,
        })
    }
}

/// The first batch after the segments listed (their names; verify checks them).
fn sealed_next(segs: &[(u64, u64, PathBuf)]) -> u64 {
    segs.last().map_or(0, |(_, last, _)| last + 1)
}

/// The outcome of scanning the live tail.
pub struct LiveScan {
    pub batches: Vec<Chained>,
    pub good_len: u64,
    /// The tail after the last whole batch, when it is not empty.
    pub torn: Option<Torn>,
    /// Damage followed by whole batches: not a torn write.
    pub damaged: Option<(u64, String)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Torn {
    pub offset: u64,
    pub len: u64,
    pub reason: String,
}

/// Splits the live tail into whole batches and what follows them.
pub fn scan_live(bytes: &[u8]) -> LiveScan {
    let mut batches = Vec::new();
    let mut at = 0usize;
    let mut torn = None;
    let mut damaged = None;
    while at < bytes.len() {
        match batch::decode(&bytes[at..]) {
            Decoded::Frame { batch, hash, len } => {
                batches.push(Chained {
                    batch: *batch,
                    hash,
                    offset: at as u64,
                    len: len as u64,
                });
                at += len;
            }
            Decoded::Incomplete { have, need } => {
                torn = Some(Torn {
                    offset: at as u64,
                    len: (bytes.len() - at) as u64,
                    reason: format!("the last batch is cut short ({have} of {need} bytes)"),
                });
                break;
            }
            Decoded::Corrupt(reason) => {
                if whole_frame_after(&bytes[at + 1..]) {
                    damaged = Some((at as u64, reason));
                } else {
                    torn = Some(Torn {
                        offset: at as u64,
                        len: (bytes.len() - at) as u64,
                        reason: format!("the last batch is unreadable: {reason}"),
                    });
                }
                break;
            }
        }
    }
    LiveScan {
        batches,
        good_len: at as u64,
        torn,
        damaged,
    }
}

fn whole_frame_after(bytes: &[u8]) -> bool {
    (0..bytes.len().saturating_sub(4))
        .filter(|&i| &bytes[i..i + 4] == batch::MAGIC)
        .any(|i| matches!(batch::decode(&bytes[i..]), Decoded::Frame { .. }))
}

/// Writes the segment of `batches`, the first `upto` bytes of `live.log` (their offsets count
/// `shift` bytes before the file's start), after checking that the file still holds what was
/// written: each frame's bytes must hash to the hash chained in memory (cheaper than decoding
/// it again). A tail changed behind the writer's back is refused, never sealed.
fn seal_segment(dir: &Path, upto: u64, shift: u64, batches: &[Arc<Chained>]) -> Result<()> {
    let live_path = dir.join(LIVE_FILE);
    let bytes = read_all(&live_path)?;
    if (bytes.len() as u64) < upto {
        return Err(Error::Corrupt {
            path: live_path,
            reason: format!(
                "holds {} bytes where {upto} were written and fsynced: it was truncated or replaced behind the writer",
                bytes.len(),
            ),
        });
    }
    let raw = &bytes[..upto as usize];
    for c in batches {
        let at = (c.offset - shift) as usize;
        let frame = &raw[at..at + c.len as usize];
        let body = &frame[8..frame.len() - 32];
        if <[u8; 32]>::from(sha2::Sha256::digest(body)) != c.hash {
            return Err(Error::Damaged {
                path: live_path,
                offset: at as u64,
                reason: format!("batch {} changed on disk after it was written", c.batch.seq),
            });
        }
    }
    segment::write(&dir.join(SEGMENTS_DIR), raw, shift, batches)?;
    Ok(())
}

fn read_all(path: &Path) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut buf).map_err(|e| Error::io(path, e))?;
            Ok(buf)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(buf),
        Err(e) => Err(Error::io(path, e)),
    }
}

type InboxRead = (PathBuf, Result<InboxEntry, String>);

/// The inbox entries in the order they were written.
pub fn read_inbox(dir: &Path) -> Result<Vec<InboxRead>> {
    let inbox = dir.join(INBOX_DIR);
    let mut paths = Vec::new();
    match std::fs::read_dir(&inbox) {
        Ok(entries) => {
            for e in entries {
                let e = e.map_err(|e| Error::io(&inbox, e))?;
                let p = e.path();
                if p.extension().is_some_and(|x| x == "json") {
                    paths.push(p);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&inbox, e)),
    }
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        match std::fs::read(&p) {
            Ok(bytes) => {
                let entry = serde_json::from_slice::<InboxEntry>(&bytes).map_err(|e| e.to_string());
                out.push((p, entry));
            }
            // Absorbed by the writer between listing and reading.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&p, e)),
        }
    }
    Ok(out)
}

/// A segment as a reader sees it.
#[derive(Debug, Clone)]
pub struct SegmentRef {
    pub path: PathBuf,
    pub name_first: u64,
    pub name_last: u64,
    pub index: SegmentIndex,
}

impl SegmentRef {
    /// The index with its Bloom filters loaded, for pruning by IP, port, user or MAC.
    pub fn with_filters(&self) -> Result<SegmentIndex> {
        let mut index = self.index.clone();
        segment::read_filters(&self.path, &mut index)?;
        Ok(index)
    }
}

/// Reads the footers of the segments listed; with a window, only of those whose names' event
/// times may meet it.
fn read_segments(
    segs: Vec<(u64, u64, PathBuf)>,
    window: Option<(Timestamp, Timestamp)>,
) -> Result<Vec<SegmentRef>> {
    let mut segments = Vec::new();
    for (a, b, path) in segs {
        if let Some((from, to)) = window {
            let named = path
                .file_name()
                .and_then(|n| segment::parse_name_events(&n.to_string_lossy()))
                .map_or(segment::NamedEvents::Unknown, |(_, _, e)| e);
            if !named.may_overlap(from, to) {
                continue;
            }
        }
        match segment::read_index(&path) {
            Ok(index) => segments.push(SegmentRef {
                path,
                name_first: a,
                name_last: b,
                index,
            }),
            // Purged since it was listed.
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(segments)
}

/// A consistent picture of the store on disk: its segments, the live tail and the inbox.
pub struct View {
    pub segments: Vec<SegmentRef>,
    pub live: Vec<Arc<Chained>>,
    pub live_torn: Option<Torn>,
    pub live_damaged: Option<(u64, String)>,
    pub inbox: Vec<InboxEntry>,
}

impl View {
    /// Loads the view, retrying when a seal happened between listing segments and reading the
    /// live tail (the sealed batches would otherwise be missed).
    pub fn load(dir: &Path) -> Result<View> {
        View::load_in(dir, None)
    }

    fn load_in(dir: &Path, window: Option<(Timestamp, Timestamp)>) -> Result<View> {
        for _ in 0..100 {
            let segs = segment::list(&dir.join(SEGMENTS_DIR))?;
            let bytes = read_all(&dir.join(LIVE_FILE))?;
            if segment::list(&dir.join(SEGMENTS_DIR))? != segs {
                // A seal (or purge) ran meanwhile: the live tail may have lost sealed batches.
                continue;
            }
            let sealed_next = sealed_next(&segs);
            let segments = read_segments(segs, window)?;
            let scan = scan_live(&bytes);
            let live: Vec<Arc<Chained>> = scan
                .batches
                .into_iter()
                .filter(|c| c.batch.seq >= sealed_next)
                .map(Arc::new)
                .collect();
            if live.first().is_some_and(|c| c.batch.seq > sealed_next) {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            let inbox = read_inbox(dir)?
                .into_iter()
                .filter_map(|(_, e)| e.ok())
                .collect();
            return Ok(View {
                segments,
                live,
                live_torn: scan.torn,
                live_damaged: scan.damaged,
                inbox,
            });
        }
        Err(Error::Corrupt {
            path: dir.join(LIVE_FILE),
            reason: "the live tail does not follow the last segment".into(),
        })
    }

    /// Every control batch (holds, releases, tombstones, signatures) in chain order, then those
    /// waiting in the inbox; tombstones contribute what they carried from purged segments.
    pub fn controls(&self) -> Vec<Content> {
        let mut out = Vec::new();
        let push = |c: &Content, out: &mut Vec<Content>| {
            if let Content::Tombstone(t) = c {
                for carried in &t.carried {
                    out.push(carried.content.clone());
                }
            }
            out.push(c.clone());
        };
        for s in &self.segments {
            for b in &s.index.controls {
                push(&b.content, &mut out);
            }
        }
        for c in &self.live {
            if !matches!(c.batch.content, Content::Records { .. }) {
                push(&c.batch.content, &mut out);
            }
        }
        for e in &self.inbox {
            if !matches!(e.content, Content::Records { .. }) {
                push(&e.content, &mut out);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{flow, opts_at};

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn retention_below_the_floor_is_refused_naming_the_law() {
        let dir = tempfile::tempdir().unwrap();
        for (days, ok) in [(0, false), (89, false), (90, true), (730, true)] {
            let opts = Options {
                retention_days: days,
                ..Options::default()
            };
            match opts.validate() {
                Ok(()) => assert!(ok, "{days} accepted"),
                Err(e) => {
                    assert!(!ok, "{days} refused");
                    assert!(e.to_string().contains("Computer Crime Act"), "{e}");
                }
            }
        }
        let opts = Options {
            retention_days: 30,
            ..Options::default()
        };
        assert!(Store::init(dir.path().join("s"), &opts).is_err());
        assert!(!dir.path().join("s").join(META_FILE).exists());
    }

    #[test]
    fn a_full_disk_fails_the_append_leaves_no_trace_and_the_next_append_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::init(dir.path(), &opts_at(t("2026-01-01T00:00:00Z"))).unwrap();
        store.append(vec![flow(1)]).unwrap();
        let before = std::fs::read(dir.path().join(LIVE_FILE)).unwrap();
        store.lock_writer().unwrap().fail_after = Some(10);
        let err = store.append(vec![flow(2)]).unwrap_err();
        assert!(matches!(err, Error::DiskFull { .. }), "{err}");
        assert!(err.to_string().contains("free space"), "{err}");
        assert_eq!(std::fs::read(dir.path().join(LIVE_FILE)).unwrap(), before);
        store.lock_writer().unwrap().fail_after = None;
        let r = store.append(vec![flow(3)]).unwrap();
        assert_eq!(r.chained.unwrap().first_record, 1);
        drop(store);
        let store = Store::open(dir.path(), &opts_at(t("2026-01-01T00:00:00Z"))).unwrap();
        assert!(store.recovery().is_none());
    }

    /// Batches encoded ahead are chained in the order they are appended (not prepared); one
    /// that could not be written is handed back, still encoded, and stored by the retry; the
    /// store then reopens without recovery and verifies intact.
    #[test]
    fn prepared_batches_chain_in_append_order_and_a_failed_one_is_handed_back() {
        let dir = tempfile::tempdir().unwrap();
        let opts = opts_at(t("2026-01-01T00:00:00Z"));
        let store = Store::init(dir.path(), &opts).unwrap();
        let first = store.prepare(vec![flow(1), flow(2)]);
        let second = store.prepare(vec![flow(3)]);
        let r = store.try_append_prepared(second).unwrap();
        assert_eq!((r.records, r.chained.unwrap().first_record), (1, 0));
        store.lock_writer().unwrap().fail_after = Some(10);
        let (error, back) = store.try_append_prepared(first).unwrap_err();
        assert!(matches!(error, Error::DiskFull { .. }), "{error}");
        assert_eq!(back.records(), 2);
        store.lock_writer().unwrap().fail_after = None;
        let r = store.try_append_prepared(*back).unwrap();
        assert_eq!((r.records, r.chained.unwrap().first_record), (2, 1));
        drop(store);
        let store = Store::open(dir.path(), &opts).unwrap();
        assert!(store.recovery().is_none());
        let stored: Vec<Record> = store
            .view()
            .unwrap()
            .live
            .iter()
            .flat_map(|c| match &c.batch.content {
                Content::Records { records } => records.clone(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(stored, vec![flow(3), flow(1), flow(2)]);
        drop(store);
        let report =
            crate::verify::verify(dir.path(), &crate::verify::VerifyOptions::default()).unwrap();
        assert!(report.intact, "{:#?}", report.problems);
    }

    #[test]
    fn a_live_tail_changed_behind_the_writer_is_not_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::init(dir.path(), &opts_at(t("2026-01-01T00:00:00Z"))).unwrap();
        store.append(vec![flow(1), flow(2)]).unwrap();
        let live = dir.path().join(LIVE_FILE);
        let mut bytes = std::fs::read(&live).unwrap();
        // A byte inside the body of the first frame (after magic, length, seq and prev).
        bytes[8 + 40 + 4] ^= 0x01;
        std::fs::write(&live, &bytes).unwrap();
        match store.seal_now() {
            Err(Error::Damaged { reason, .. }) => {
                assert!(reason.contains("changed on disk"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(
            segment::list(&dir.path().join(SEGMENTS_DIR))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_second_writer_is_refused_and_a_shared_opener_queues_into_the_inbox() {
        let dir = tempfile::tempdir().unwrap();
        let opts = opts_at(t("2026-01-01T00:00:00Z"));
        let writer = Store::init(dir.path(), &opts).unwrap();
        assert!(matches!(
            Store::open(dir.path(), &opts),
            Err(Error::Locked(_))
        ));
        let cli = Store::open_shared(dir.path(), &opts).unwrap();
        assert!(!cli.is_writer());
        let r = cli
            .log_access("somchai", "search", "--ip 10.0.0.1")
            .unwrap();
        assert!(r.queued.is_some() && r.chained.is_none());
        writer.tick().unwrap();
        let view = writer.view().unwrap();
        assert!(view.inbox.is_empty());
        let accesses: Vec<_> = view
            .live
            .iter()
            .filter(|c| matches!(&c.batch.content, Content::Records { records } if records.iter().any(|r| matches!(&r.body, Body::Access(a) if a.actor == "somchai"))))
            .collect();
        assert_eq!(accesses.len(), 1);
    }
}
