//! Sealed segments: immutable, compressed, indexed files of consecutive batches.
//!
//! Layout of `segments/seg-<first>-<last>_<min>_<max>.knseg` (first and last batch, 20 digits
//! each; event times of its records in Unix seconds, `none` for none; see [`index_file_name`]):
//!
//! ```text
//! "KNSEG002" | block 0 | block 1 | ... | filter bits ... | footer (JSON SegmentIndex)
//!   | footer length (u64 LE) | "KNSEGEND"
//! ```
//!
//! A block is zstd (after its plain length, u32 LE) of whole batch frames copied byte for byte
//! from the live tail, so every batch keeps the hash it was chained with. The footer is derived
//! data: the time ranges, Bloom filters (per segment over every IP, port, user, MAC and
//! assigned address; per block over translated endpoints, and over users, MACs and assigned
//! addresses), the schools, per-source counts and a copy of the control batches (holds,
//! releases, tombstones, signatures). Verify recomputes it from the blocks; search trusts it
//! only to skip what cannot match.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::batch::{self, Batch, Content, Decoded, Hash};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::record::{Body, Input, Record, Term};

const HEAD_MAGIC: &[u8; 8] = b"KNSEG002";
const TAIL_MAGIC: &[u8; 8] = b"KNSEGEND";
/// Raw bytes of frames gathered into one compressed block (a batch is never split).
const BLOCK_RAW_BYTES: usize = 128 << 10;

/// A time range, empty until a time is added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub min: Option<Timestamp>,
    pub max: Option<Timestamp>,
}

impl Span {
    pub fn add(&mut self, t: Timestamp) {
        self.min = Some(self.min.map_or(t, |m| m.min(t)));
        self.max = Some(self.max.map_or(t, |m| m.max(t)));
    }

    /// True when some time in the span lies in `[from, to]`.
    pub fn overlaps(&self, from: Timestamp, to: Timestamp) -> bool {
        match (self.min, self.max) {
            (Some(min), Some(max)) => min <= to && max >= from,
            _ => false,
        }
    }
}

/// Facts about one source (input and peer) within a segment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceStat {
    pub records: u64,
    pub receive: Span,
}

/// One compressed block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockIndex {
    pub offset: u64,
    pub len: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub records: u64,
    pub event: Span,
    /// Bloom filter over the block's translated endpoints (attribution's first step).
    /// point queries and attribution look for.
    pub filter: Bloom,
    /// Bloom filter over the block's users, MACs and assigned addresses (attribution's second
    /// step, user and MAC searches). Apart from the endpoints, so that a block of flows alone
    /// has an empty one and is never read for them.
    pub people: Bloom,
}

/// Terms indexed per block in the people filter: users, MACs and assigned addresses (translated
/// endpoints are in the block's other filter).
pub fn people_level(t: &Term<'_>) -> bool {
    matches!(t, Term::User(_) | Term::Mac(_) | Term::Assigned(_))
}

/// Terms indexed per segment: every IP, port, user, MAC and assigned address.
pub fn segment_level(t: &Term<'_>) -> bool {
    !matches!(t, Term::Endpoint(..))
}

/// The public address and port a record says a translation used: a NAT record's outside
/// endpoint, or a flow's source after NAT. Attribution's first step looks for it; it is the only
/// endpoint the filters index (inside and destination endpoints are as many as the records and
/// would make the filters as large as the data).
pub fn translated(r: &Record) -> Option<(IpAddr, u16)> {
    match &r.body {
        Body::Nat(n) => n.outside_port.map(|p| (n.outside_ip, p)),
        Body::Flow(f) => f.nat_src_ip.zip(f.nat_src_port),
        _ => None,
    }
}

/// Calls `f` with every term the filters index for `r`: its terms, but of its endpoints only
/// the translated one.
pub fn for_each_indexed(r: &Record, mut f: impl FnMut(Term<'_>)) {
    r.for_each_term(|t| {
        if !matches!(t, Term::Endpoint(..)) {
            f(t)
        }
    });
    if let Some((a, p)) = translated(r) {
        f(Term::Endpoint(a, p));
    }
}

/// The index entry of a block at `offset` (`len` bytes packed) holding `batches`.
pub fn block_index(offset: u64, len: u64, batches: &[Chained]) -> BlockIndex {
    let mut keys = KeySet::default();
    let mut people = KeySet::default();
    let mut buf = Vec::new();
    let mut event = Span::default();
    let mut records = 0;
    for c in batches {
        if let Content::Records { records: rs } = &c.batch.content {
            for r in rs {
                event.add(r.event_time);
                for_each_indexed(r, |t| {
                    if matches!(t, Term::Endpoint(..)) {
                        keys.insert(key_hash_of(t, &mut buf));
                    } else if people_level(&t) {
                        people.insert(key_hash_of(t, &mut buf));
                    }
                });
            }
            records += rs.len() as u64;
        }
    }
    let seqs = (
        batches.first().map_or(0, |c| c.batch.seq),
        batches.last().map_or(0, |c| c.batch.seq),
    );
    finish_block(offset, len, seqs, records, event, &keys, &people)
}

fn finish_block(
    offset: u64,
    len: u64,
    (first_seq, last_seq): (u64, u64),
    records: u64,
    event: Span,
    keys: &KeySet,
    people_keys: &KeySet,
) -> BlockIndex {
    let mut filter = Bloom::with_params(keys.len(), BLOCK_BITS_PER_KEY, BLOCK_K);
    for k in keys {
        filter.insert_hash(*k);
    }
    let mut people = Bloom::with_params(people_keys.len(), PEOPLE_BITS_PER_KEY, PEOPLE_K);
    for k in people_keys {
        people.insert_hash(*k);
    }
    BlockIndex {
        offset,
        len,
        first_seq,
        last_seq,
        records,
        event,
        filter,
        people,
    }
}

/// Block endpoint filters: about 3.5% false positives (each costs one block read; the NAT step
/// looks at about ten minutes of blocks, a few dozen at a large district's rate). One key per
/// translated flow, so every bit here is a bit per record.
const BLOCK_BITS_PER_KEY: usize = 7;
const BLOCK_K: u32 = 5;
/// Block people filters: about 0.05% false positives (the lease step looks at two days of
/// blocks; few blocks hold sessions and leases, so this costs little).
const PEOPLE_BITS_PER_KEY: usize = 16;
const PEOPLE_K: u32 = 11;
/// Segment filters: about 6% false positives (a segment that passes is still pruned by block,
/// except for IP and port searches, which then read it). Nearly one key per flow record (its
/// destination address), so every bit here is a bit per record.
const SEGMENT_BITS_PER_KEY: usize = 6;
const SEGMENT_K: u32 = 4;

/// The two hashes of a filter key (FNV-1a with two seeds): all a Bloom filter needs of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(u64, u64);

pub fn key_hash(key: &[u8]) -> KeyHash {
    KeyHash(
        fnv1a(0xcbf2_9ce4_8422_2325, key),
        fnv1a(0x8422_2325_cbf2_9ce4, key) | 1,
    )
}

fn key_hash_of(t: Term<'_>, buf: &mut Vec<u8>) -> KeyHash {
    write_term_key(t, buf);
    key_hash(buf)
}

/// A cheap hasher: FNV-1a over bytes, and words (such as the hashes of filter keys, already
/// hashes) folded in, with a final mix so that every bit of the result depends on the input.
#[derive(Default)]
pub(crate) struct Rehash(u64);

impl std::hash::Hasher for Rehash {
    fn finish(&self) -> u64 {
        (self.0 ^ (self.0 >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = fnv1a(self.0, bytes);
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = self.0.rotate_left(23) ^ v;
    }
}

type KeySet = HashSet<KeyHash, Fast>;

/// A hasher for small keys met once per record (FNV-1a; not for keys an attacker chooses to
/// collide, which costs only speed here).
pub(crate) type Fast = std::hash::BuildHasherDefault<Rehash>;

/// The footer of a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentIndex {
    pub first_seq: u64,
    pub last_seq: u64,
    #[serde(with = "batch::hex_hash")]
    pub prev: Hash,
    #[serde(with = "batch::hex_hash")]
    pub last_hash: Hash,
    pub first_record: u64,
    pub records: u64,
    pub event: Span,
    pub receive: Span,
    pub blocks: Vec<BlockIndex>,
    pub filter: Bloom,
    pub schools: BTreeSet<String>,
    pub sources: BTreeMap<String, SourceStat>,
    pub controls: Vec<Batch>,
}

impl SegmentIndex {
    /// The bytes the segment's and its blocks' filters take in the file.
    pub fn filter_bytes(&self) -> u64 {
        self.filter.len
            + self
                .blocks
                .iter()
                .map(|b| b.filter.len + b.people.len)
                .sum::<u64>()
    }
}

/// A batch as read back, with its hash and where its frame starts.
#[derive(Debug, Clone)]
pub struct Chained {
    pub batch: Batch,
    pub hash: Hash,
    /// Byte offset of the frame in the live tail (for the writer's own batches, counted from
    /// where `live.log` started when it opened it, before seals cut its start), or in the
    /// decompressed block.
    pub offset: u64,
    pub len: u64,
}

/// The name of a segment of batches `first..=last` that does not say its event times (the
/// form of stores sealed before names carried them). See [`index_file_name`].
pub fn file_name(first: u64, last: u64) -> String {
    format!("seg-{first:020}-{last:020}.knseg")
}

/// The name a segment is sealed under: its batch range and the event-time range of its records
/// in whole Unix seconds (the earliest rounded down, the latest up), `none` when it holds no
/// record: `seg-<first>-<last>_<min>_<max>.knseg`. The directory listing is then the
/// catalogue: a query opens only the footers of segments whose named range meets its window.
/// `verify` checks the name against the contents.
pub fn index_file_name(index: &SegmentIndex) -> String {
    let (first, last) = (index.first_seq, index.last_seq);
    match named_events(&index.event) {
        Some((min, max)) => format!("seg-{first:020}-{last:020}_{min}_{max}.knseg"),
        None => format!("seg-{first:020}-{last:020}_none.knseg"),
    }
}

/// The event-time range a segment's name gives for `event`: whole seconds, min rounded down and
/// max rounded up; `None` when there is no event time.
pub fn named_events(event: &Span) -> Option<(i64, i64)> {
    let (min, max) = (event.min?, event.max?);
    let floor = min.as_second() - i64::from(min.subsec_nanosecond() < 0);
    let ceil = max.as_second() + i64::from(max.subsec_nanosecond() > 0);
    Some((floor, ceil))
}

/// What a segment file's name says of its event times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedEvents {
    /// A name of the older form, without times: the footer must be read to know.
    Unknown,
    /// The segment holds no record.
    None,
    /// Every record's event time lies in `[min, max]` (Unix seconds).
    Range(i64, i64),
}

impl NamedEvents {
    /// False only when the name rules out an event time in `[from, to]`.
    pub fn may_overlap(self, from: Timestamp, to: Timestamp) -> bool {
        match self {
            NamedEvents::Unknown => true,
            NamedEvents::None => false,
            NamedEvents::Range(min, max) => {
                let after = Timestamp::from_second(min).is_ok_and(|min| min > to);
                let before = Timestamp::from_second(max).is_ok_and(|max| max < from);
                !(after || before)
            }
        }
    }
}

/// The batch range and event times a segment file's name claims, if it is a segment file.
pub fn parse_name_events(name: &str) -> Option<(u64, u64, NamedEvents)> {
    let rest = name.strip_prefix("seg-")?.strip_suffix(".knseg")?;
    let (seqs, events) = match rest.split_once('_') {
        None => (rest, NamedEvents::Unknown),
        Some((seqs, "none")) => (seqs, NamedEvents::None),
        Some((seqs, times)) => {
            let (a, b) = times.split_once('_')?;
            (seqs, NamedEvents::Range(a.parse().ok()?, b.parse().ok()?))
        }
    };
    let (a, b) = seqs.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?, events))
}

/// The batch range a segment file's name claims, if it is a segment file.
pub fn parse_name(name: &str) -> Option<(u64, u64)> {
    parse_name_events(name).map(|(a, b, _)| (a, b))
}

/// The segment files in `dir`, ordered by the first batch their names claim.
pub fn list(dir: &Path) -> Result<Vec<(u64, u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        if let Some((a, b)) = parse_name(&name.to_string_lossy()) {
            out.push((a, b, entry.path()));
        }
    }
    out.sort_by_key(|(a, b, _)| (*a, *b));
    Ok(out)
}

/// Accumulates the index of a run of batches.
#[derive(Default)]
pub struct IndexBuilder {
    first: Option<(u64, Hash, u64)>,
    last: Option<(u64, Hash)>,
    records: u64,
    event: Span,
    receive: Span,
    keys: KeySet,
    block_keys: KeySet,
    people_keys: KeySet,
    block_records: u64,
    block_event: Span,
    buf: Vec<u8>,
    schools: BTreeSet<String>,
    sources: HashMap<(Input, Option<IpAddr>), SourceStat, Fast>,
    controls: Vec<Batch>,
}

impl IndexBuilder {
    pub fn add(&mut self, c: &Chained) {
        let b = &c.batch;
        if self.first.is_none() {
            self.first = Some((b.seq, b.prev, b.first_record));
        }
        self.last = Some((b.seq, c.hash));
        match &b.content {
            Content::Records { records } => {
                for r in records {
                    self.records += 1;
                    self.event.add(r.event_time);
                    self.receive.add(r.receive_time);
                    self.block_records += 1;
                    self.block_event.add(r.event_time);
                    let (keys, block_keys, people_keys, buf) = (
                        &mut self.keys,
                        &mut self.block_keys,
                        &mut self.people_keys,
                        &mut self.buf,
                    );
                    for_each_indexed(r, |t| {
                        let h = key_hash_of(t, buf);
                        if segment_level(&t) {
                            keys.insert(h);
                        }
                        if matches!(t, Term::Endpoint(..)) {
                            block_keys.insert(h);
                        } else if people_level(&t) {
                            people_keys.insert(h);
                        }
                    });
                    if let Some(s) = &r.school
                        && !self.schools.contains(s)
                    {
                        self.schools.insert(s.clone());
                    }
                    let stat = self
                        .sources
                        .entry((r.origin.input, r.origin.peer))
                        .or_default();
                    stat.records += 1;
                    stat.receive.add(r.receive_time);
                }
            }
            _ => self.controls.push(b.clone()),
        }
    }

    /// The index entry of the block holding `batches`, the batches added since the last block
    /// (the same as [`block_index`], without going over the records again).
    pub fn end_block(&mut self, offset: u64, len: u64, seqs: (u64, u64)) -> BlockIndex {
        let b = finish_block(
            offset,
            len,
            seqs,
            self.block_records,
            self.block_event,
            &self.block_keys,
            &self.people_keys,
        );
        self.block_keys.clear();
        self.people_keys.clear();
        self.block_records = 0;
        self.block_event = Span::default();
        b
    }

    pub fn finish(self, blocks: Vec<BlockIndex>) -> SegmentIndex {
        let (first_seq, prev, first_record) = self.first.unwrap_or((0, batch::GENESIS, 0));
        let (last_seq, last_hash) = self.last.unwrap_or((0, batch::GENESIS));
        let mut filter = Bloom::with_params(self.keys.len(), SEGMENT_BITS_PER_KEY, SEGMENT_K);
        for k in &self.keys {
            filter.insert_hash(*k);
        }
        SegmentIndex {
            first_seq,
            last_seq,
            prev,
            last_hash,
            first_record,
            records: self.records,
            event: self.event,
            receive: self.receive,
            blocks,
            filter,
            schools: self.schools,
            sources: self
                .sources
                .into_iter()
                .map(|((input, peer), stat)| {
                    let name = match peer {
                        Some(p) => format!("{}/{p}", input.name()),
                        None => input.name().to_string(),
                    };
                    (name, stat)
                })
                .collect(),
            controls: self.controls,
        }
    }
}

/// The bytes a term is filed under in the Bloom filter.
pub fn term_key(t: Term<'_>) -> Vec<u8> {
    let mut buf = Vec::new();
    write_term_key(t, &mut buf);
    buf
}

/// Writes the key of `t` into `buf` (cleared first): a tag byte, then the value in binary
/// (address octets, port big-endian) or as bytes (users, lower-cased MACs). No formatting: this
/// runs for every term of every record at seal.
pub fn write_term_key(t: Term<'_>, buf: &mut Vec<u8>) {
    fn ip(buf: &mut Vec<u8>, a: IpAddr) {
        match a {
            IpAddr::V4(v) => buf.extend_from_slice(&v.octets()),
            IpAddr::V6(v) => buf.extend_from_slice(&v.octets()),
        }
    }
    buf.clear();
    match t {
        Term::Ip(a) => {
            buf.push(b'i');
            ip(buf, a);
        }
        Term::Port(p) => {
            buf.push(b'p');
            buf.extend_from_slice(&p.to_be_bytes());
        }
        Term::User(u) => {
            buf.push(b'u');
            buf.extend_from_slice(u.as_bytes());
        }
        Term::Mac(m) => {
            buf.push(b'm');
            buf.extend(m.bytes().map(|b| b.to_ascii_lowercase()));
        }
        Term::Endpoint(a, p) => {
            buf.push(b'e');
            ip(buf, a);
            buf.extend_from_slice(&p.to_be_bytes());
        }
        Term::Assigned(a) => {
            buf.push(b'a');
            ip(buf, a);
        }
    }
}

/// Writes `batches` (whose frames are `raw[c.offset - shift..][..c.len]`) as a segment in `dir`,
/// durably, and returns its path and index.
pub fn write(
    dir: &Path,
    raw: &[u8],
    shift: u64,
    batches: &[std::sync::Arc<Chained>],
) -> Result<(PathBuf, SegmentIndex)> {
    let mut out = HEAD_MAGIC.to_vec();
    let mut blocks = Vec::new();
    let mut builder = IndexBuilder::default();
    let mut i = 0;
    while i < batches.len() {
        let start = i;
        let mut plain = Vec::new();
        while i < batches.len() && (plain.is_empty() || plain.len() < BLOCK_RAW_BYTES) {
            let c = &batches[i];
            let at = (c.offset - shift) as usize;
            plain.extend_from_slice(&raw[at..at + c.len as usize]);
            builder.add(c);
            i += 1;
        }
        let packed = compress(&plain)?;
        blocks.push(builder.end_block(
            out.len() as u64,
            packed.len() as u64,
            (batches[start].batch.seq, batches[i - 1].batch.seq),
        ));
        out.extend_from_slice(&packed);
    }
    let mut index = builder.finish(blocks);
    for b in index
        .blocks
        .iter_mut()
        .flat_map(|b| [&mut b.filter, &mut b.people])
        .chain(std::iter::once(&mut index.filter))
    {
        b.offset = out.len() as u64;
        b.len = b.bits.len() as u64;
        out.extend_from_slice(&b.bits);
    }
    let footer = serde_json::to_vec(&index).map_err(|source| Error::Encode {
        what: "segment index",
        source,
    })?;
    out.extend_from_slice(&footer);
    out.extend_from_slice(&(footer.len() as u64).to_le_bytes());
    out.extend_from_slice(TAIL_MAGIC);
    let path = dir.join(index_file_name(&index));
    fsutil::write_atomic_mode(&path, &out, 0o444)?;
    Ok((path, index))
}

/// Reads a segment's footer.
pub fn read_index(path: &Path) -> Result<SegmentIndex> {
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let size = f.metadata().map_err(|e| Error::io(path, e))?.len();
    if size < 24 {
        return Err(corrupt(format!(
            "only {size} bytes, too short for a segment"
        )));
    }
    let mut head = [0u8; 8];
    f.read_exact(&mut head).map_err(|e| Error::io(path, e))?;
    if &head != HEAD_MAGIC {
        return Err(corrupt("the segment header is altered".into()));
    }
    let mut tail = [0u8; 16];
    f.seek(SeekFrom::End(-16)).map_err(|e| Error::io(path, e))?;
    f.read_exact(&mut tail).map_err(|e| Error::io(path, e))?;
    if &tail[8..] != TAIL_MAGIC {
        return Err(corrupt(
            "the segment trailer is altered or the file is truncated".into(),
        ));
    }
    let len = u64::from_le_bytes(tail[..8].try_into().expect("8 bytes"));
    if len > size - 24 {
        return Err(corrupt(format!("footer length {len} is impossible")));
    }
    let mut footer = vec![0u8; len as usize];
    f.seek(SeekFrom::Start(size - 16 - len))
        .map_err(|e| Error::io(path, e))?;
    f.read_exact(&mut footer).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&footer).map_err(|e| corrupt(format!("the footer does not parse: {e}")))
}

/// Reads and decodes the batches of one block.
pub fn read_block(file: &mut File, path: &Path, block: &BlockIndex) -> Result<Vec<Chained>> {
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let mut packed = vec![0u8; block.len as usize];
    file.seek(SeekFrom::Start(block.offset))
        .and_then(|_| file.read_exact(&mut packed))
        .map_err(|e| Error::io(path, e))?;
    let plain = decompress(&packed).map_err(|e| {
        corrupt(format!(
            "block at byte {} (batches {}..={}) does not decompress: {e}",
            block.offset, block.first_seq, block.last_seq
        ))
    })?;
    decode_all(&plain).map_err(|(at, reason)| {
        corrupt(format!(
            "block at byte {} (batches {}..={}): {reason} at byte {at} of the block",
            block.offset, block.first_seq, block.last_seq
        ))
    })
}

/// zstd level of sealed blocks. The frames' columns are compressed already; what is left is
/// mostly the batches' repeated string and source tables, which level 3 finds as well as higher
/// levels would, cheaply.
const ZSTD_LEVEL: i32 = 3;

/// A block as stored: its plain length (u32 LE), then zstd of the plain bytes.
fn compress(plain: &[u8]) -> Result<Vec<u8>> {
    let mut out = (plain.len() as u32).to_le_bytes().to_vec();
    let packed = crate::columns::pack(plain, ZSTD_LEVEL).map_err(|e| Error::Corrupt {
        path: PathBuf::from("(block being sealed)"),
        reason: format!("zstd failed: {e}"),
    })?;
    out.extend_from_slice(&packed);
    Ok(out)
}

fn decompress(packed: &[u8]) -> Result<Vec<u8>, String> {
    if packed.len() < 4 {
        return Err("shorter than its length prefix".into());
    }
    let len = u32::from_le_bytes(packed[..4].try_into().expect("4 bytes")) as usize;
    if len > 4 * batch::MAX_BODY {
        return Err(format!("claims {len} bytes"));
    }
    let plain = crate::columns::unpack(&packed[4..], len).map_err(|e| e.to_string())?;
    if plain.len() != len {
        return Err(format!("{} bytes where {len} were recorded", plain.len()));
    }
    Ok(plain)
}

/// Decodes consecutive whole frames; the first offset that is not one is an error.
pub fn decode_all(buf: &[u8]) -> Result<Vec<Chained>, (usize, String)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        match batch::decode(&buf[at..]) {
            Decoded::Frame { batch, hash, len } => {
                out.push(Chained {
                    batch: *batch,
                    hash,
                    offset: at as u64,
                    len: len as u64,
                });
                at += len;
            }
            Decoded::Incomplete { have, need } => {
                return Err((at, format!("frame cut short ({have} of {need} bytes)")));
            }
            Decoded::Corrupt(reason) => return Err((at, reason)),
        }
    }
    Ok(out)
}

/// A Bloom filter: "maybe present" or "certainly absent".
///
/// In a segment footer only `k` and where the bits lie in the file are written; the bits are
/// read by [`read_filters`]. A filter whose bits are not loaded answers "maybe" to everything,
/// so a forgotten load costs speed, never a missed record or a purge of held data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bloom {
    k: u32,
    #[serde(skip)]
    bits: Vec<u8>,
    offset: u64,
    len: u64,
}

impl Bloom {
    /// About 1% false positives.
    pub fn with_capacity(n: usize) -> Bloom {
        Bloom::with_params(n, 10, 7)
    }

    pub fn with_params(n: usize, bits_per_key: usize, k: u32) -> Bloom {
        Bloom {
            k,
            bits: vec![0; (n * bits_per_key).div_ceil(8).max(8)],
            offset: 0,
            len: 0,
        }
    }

    fn positions(&self, KeyHash(h1, h2): KeyHash) -> impl Iterator<Item = usize> + use<> {
        let m = (self.bits.len() * 8) as u64;
        (0..u64::from(self.k)).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % m) as usize)
    }

    pub fn insert(&mut self, key: &[u8]) {
        self.insert_hash(key_hash(key));
    }

    pub fn insert_hash(&mut self, h: KeyHash) {
        let m = (self.bits.len() * 8) as u64;
        for i in 0..u64::from(self.k) {
            let p = (h.0.wrapping_add(i.wrapping_mul(h.1)) % m) as usize;
            self.bits[p / 8] |= 1 << (p % 8);
        }
    }

    pub fn may_contain(&self, key: &[u8]) -> bool {
        if self.bits.is_empty() {
            return true;
        }
        self.positions(key_hash(key))
            .all(|p| self.bits[p / 8] & (1 << (p % 8)) != 0)
    }
}

fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Loads the bits of the segment's and its blocks' filters (one read of the filter section).
pub fn read_filters(path: &Path, index: &mut SegmentIndex) -> Result<()> {
    let refs = std::iter::once(&index.filter)
        .chain(index.blocks.iter().flat_map(|b| [&b.filter, &b.people]));
    let start = refs.clone().map(|f| f.offset).min().unwrap_or(0);
    let end = refs.map(|f| f.offset + f.len).max().unwrap_or(0);
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let size = f.metadata().map_err(|e| Error::io(path, e))?.len();
    if start > end || end > size {
        return Err(Error::Corrupt {
            path: path.to_owned(),
            reason: format!(
                "the footer places filters at bytes {start}..{end} of a {size}-byte file"
            ),
        });
    }
    let mut buf = vec![0u8; (end - start) as usize];
    f.seek(SeekFrom::Start(start))
        .and_then(|_| f.read_exact(&mut buf))
        .map_err(|e| Error::io(path, e))?;
    let fill = |b: &mut Bloom| {
        let at = (b.offset - start) as usize;
        b.bits = buf[at..at + b.len as usize].to_vec();
    };
    fill(&mut index.filter);
    for block in &mut index.blocks {
        fill(&mut block.filter);
        fill(&mut block.people);
    }
    Ok(())
}

/// Loads the bits of one filter from an open segment file.
pub fn load_filter(file: &mut File, path: &Path, filter: &Bloom) -> Result<Bloom> {
    let mut bits = vec![0u8; filter.len as usize];
    file.seek(SeekFrom::Start(filter.offset))
        .and_then(|_| file.read_exact(&mut bits))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Error::Corrupt {
                path: path.to_owned(),
                reason: format!(
                    "a filter at byte {} lies past the end of the file",
                    filter.offset
                ),
            },
            _ => Error::io(path, e),
        })?;
    Ok(Bloom {
        bits,
        ..filter.clone()
    })
}

/// Copies where `from`'s filters lie in the file onto `to`'s, so that two indexes compare by
/// their filters' bits.
pub fn same_places(to: &mut SegmentIndex, from: &SegmentIndex) {
    to.filter.offset = from.filter.offset;
    to.filter.len = from.filter.len;
    for (a, b) in to.blocks.iter_mut().zip(&from.blocks) {
        a.filter.offset = b.filter.offset;
        a.filter.len = b.filter.len;
        a.people.offset = b.people.offset;
        a.people.len = b.people.len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bloom_never_forgets_and_rarely_lies() {
        let mut b = Bloom::with_capacity(1000);
        for i in 0..1000 {
            b.insert(format!("i10.0.{}.{}", i / 256, i % 256).as_bytes());
        }
        for i in 0..1000 {
            assert!(b.may_contain(format!("i10.0.{}.{}", i / 256, i % 256).as_bytes()));
        }
        let false_positives = (0..10_000)
            .filter(|i| b.may_contain(format!("i172.16.{}.{}", i / 256, i % 256).as_bytes()))
            .count();
        assert!(false_positives < 300, "{false_positives} of 10000");
    }

    #[test]
    fn names_round_trip_and_others_are_ignored() {
        assert_eq!(parse_name(&file_name(3, 99)), Some((3, 99)));
        assert_eq!(
            parse_name_events("seg-3-99_-5_1767225601.knseg"),
            Some((3, 99, NamedEvents::Range(-5, 1_767_225_601)))
        );
        assert_eq!(
            parse_name_events("seg-3-99_none.knseg"),
            Some((3, 99, NamedEvents::None))
        );
        assert_eq!(
            parse_name_events(&file_name(3, 99)),
            Some((3, 99, NamedEvents::Unknown))
        );
        let mut event = Span::default();
        event.add("2026-01-01T00:00:00.5Z".parse().unwrap());
        event.add("2026-01-01T00:00:09Z".parse().unwrap());
        assert_eq!(named_events(&event), Some((1_767_225_600, 1_767_225_609)));
        for bad in [
            "seg-1.knseg",
            "seg-a-b.knseg",
            "seg-1-2_3.knseg",
            "seg-1-2_a_b.knseg",
            "live.log",
            "seg-1-2.knseg.tmp1",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_named_range_rules_out_only_windows_it_cannot_meet() {
        let t = |s: i64| Timestamp::from_second(s).unwrap();
        let named = NamedEvents::Range(100, 200);
        for (from, to, may) in [
            (0, 99, false),
            (0, 100, true),
            (150, 160, true),
            (200, 300, true),
            (201, 300, false),
        ] {
            assert_eq!(named.may_overlap(t(from), t(to)), may, "{from}..{to}");
        }
        assert!(NamedEvents::Unknown.may_overlap(t(0), t(1)));
        assert!(!NamedEvents::None.may_overlap(t(0), t(i64::from(u32::MAX))));
    }
}
