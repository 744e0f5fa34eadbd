//! The binary, column-oriented body of a batch: what the hash chain covers.
//!
//! A body is
//!
//! ```text
//! seq (u64 LE) | prev (32) | written_at (time) | first_record (varint) | content tag (u8) | content
//! ```
//!
//! Control contents (tags 1 to 4: hold_add, hold_release, tombstone, signature) are JSON: they
//! are rare and read by people. Records (tag 0) are `count (varint)`, then the non-empty columns
//! in ascending id: `id (u8) | parts (u8) | part ...`, a part being `mode (u8: 0 plain, 1 zstd)
//! | plain length (varint) | [packed length (varint)] | bytes`. Each field of a record goes to the
//! column its kind and field name it (see the `C_*` constants): a 2,000-record batch of flows
//! keeps its destination addresses together, its ports together, and so on. A column of
//! variable-length values is one part; a column of fixed-width values (IPv4 addresses, ports,
//! counters) is one part per byte plane (all first bytes, then all second bytes, ...), or, for
//! ports, `parts` 0x80 and one part in value order when that is smaller. Each part is
//! zstd-compressed on its own, with its own entropy tables, when that is smaller; the string and
//! source tables are kept plain so that a sealed block's zstd stores them once for its batches.
//!
//! Encodings: varints are LEB128; signed values are zigzagged first. A time is a signed
//! nanosecond delta (from the previous record's event time, from the record's event time for
//! the other times of a record, from `written_at` for the first record), written as
//! `zigzag(delta / unit) << 2 | unit` with unit 0 ns, 1 us, 2 ms, 3 s, the largest that divides
//! it. Strings go through a per-batch dictionary (column `C_DICT`, in order of first use); a
//! field holds the string's index (an optional one holds 0 for none, index + 1 otherwise).
//! Every IP field writes its family (0 none, 4, 6) to `C_FAMILY`, then its 4 octets to its own
//! column or its 16 octets to `C_V6`. Optional numbers write 0 or 1 to `C_PRESENT` first.
//! Counters (bytes, packets, octets, durations, source indexes) are u64 by byte plane, keeping
//! only the planes the column's largest value needs (`parts` says how many). A record's input, peer,
//! import file and school are one index (`C_SOURCE`) into the batch's table of them
//! (`C_SOURCES`: input, family and octets, import and school as optional string indexes).
//!
//! Decoding is strict: every column must be consumed exactly, so bytes that are not what the
//! encoder wrote do not decode (the SHA-256 of the frame catches any change anyway).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use jiff::Timestamp;

use crate::batch::{Batch, Content, Hash};
use crate::record::{
    Access, AuthEvent, Body, ClockOffset, Flow, Input, Lease, LeaseAction, Nat, Origin,
    ProxyRequest, Raw, Record, Session, SessionStatus,
};
use crate::segment::Fast;

const C_KIND: usize = 0;
const C_EVENT: usize = 1;
const C_RECEIVE: usize = 2;
const C_SOURCE: usize = 3;
const C_FAMILY: usize = 4;
const C_V6: usize = 5;
const C_DICT: usize = 6;
const C_SOURCES: usize = 7;
const C_PRESENT: usize = 10;
const C_PROTO: usize = 11;
const C_SRC: usize = 12;
const C_SPORT: usize = 13;
const C_DST: usize = 14;
const C_DPORT: usize = 15;
const C_BYTES: usize = 16;
const C_PACKETS: usize = 17;
const C_START: usize = 18;
const C_END: usize = 19;
const C_EXPORTER: usize = 20;
const C_NAT: usize = 21;
const C_NATPORT: usize = 22;
const C_ACTION: usize = 23;
const C_USER: usize = 24;
const C_IN: usize = 25;
const C_INPORT: usize = 26;
const C_OUT: usize = 27;
const C_OUTPORT: usize = 28;
const C_ADDR: usize = 29;
const C_NUM: usize = 30;
const C_STR: usize = 31;
const C_TIME: usize = 32;
const C_DATA: usize = 33;
const C_SMALL: usize = 34;
const COLUMNS: usize = 35;

/// Bytes per value of columns stored byte-plane by byte-plane; 0 for the others. Number
/// columns (8) keep only as many planes as their largest value needs: their first byte says how
/// many.
const fn width(col: usize) -> usize {
    match col {
        C_SRC | C_DST | C_EXPORTER | C_NAT | C_IN | C_OUT | C_ADDR => 4,
        C_SPORT | C_DPORT | C_NATPORT | C_INPORT | C_OUTPORT => 2,
        C_SOURCE | C_BYTES | C_PACKETS | C_NUM => 8,
        _ => 0,
    }
}

const TAG_RECORDS: u8 = 0;
const TAG_HOLD_ADD: u8 = 1;
const TAG_HOLD_RELEASE: u8 = 2;
const TAG_TOMBSTONE: u8 = 3;
const TAG_SIGNATURE: u8 = 4;

fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A signed 64-bit number as the unsigned one a number column holds.
fn signed(v: i64) -> u64 {
    zigzag(i128::from(v)) as u64
}

/// The inverse of [`signed`].
fn unsigned(v: u64) -> i64 {
    unzigzag(u128::from(v)) as i64
}

fn zigzag(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

fn unzigzag(v: u128) -> i128 {
    ((v >> 1) as i128) ^ -((v & 1) as i128)
}

fn time_code(delta: i128) -> u128 {
    let (unit, div) = if delta % 1_000_000_000 == 0 {
        (3, 1_000_000_000)
    } else if delta % 1_000_000 == 0 {
        (2, 1_000_000)
    } else if delta % 1_000 == 0 {
        (1, 1_000)
    } else {
        (0, 1)
    };
    (zigzag(delta / div) << 2) | unit
}

fn time_delta(code: u128) -> Result<i128, String> {
    unzigzag(code >> 2)
        .checked_mul([1, 1_000, 1_000_000, 1_000_000_000][(code & 3) as usize])
        .ok_or_else(|| "a time is out of range".into())
}

fn shifted(base: i128, code: u128) -> Result<i128, String> {
    base.checked_add(time_delta(code)?)
        .ok_or_else(|| "a time is out of range".into())
}

/// Encodes a batch body (the store encodes it in two parts: [`encode_content`] and then,
/// under its lock, [`encode_header`]).
#[cfg(test)]
pub fn encode(b: &Batch) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(64);
    encode_header(&mut out, b.seq, &b.prev, b.written_at, b.first_record);
    encode_content(&mut out, &b.content, b.written_at)?;
    Ok(out)
}

/// The start of a body: where the batch sits in the chain and when it was written.
pub fn encode_header(
    out: &mut Vec<u8>,
    seq: u64,
    prev: &Hash,
    written_at: Timestamp,
    first_record: u64,
) {
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(prev);
    put_varint(out, zigzag(written_at.as_nanosecond()));
    put_varint(out, u128::from(first_record));
}

/// The rest of a body: the content's tag and the content. It depends on `written_at` (the
/// first record's event time is a delta from it) but not on the batch's place in the chain, so
/// it can be encoded before that place is known.
pub fn encode_content(
    out: &mut Vec<u8>,
    content: &Content,
    written_at: Timestamp,
) -> Result<(), serde_json::Error> {
    let json =
        |out: &mut Vec<u8>, tag: u8, v: &dyn erased::Json| -> Result<(), serde_json::Error> {
            out.push(tag);
            v.write(out)
        };
    match content {
        Content::Records { records } => {
            out.push(TAG_RECORDS);
            let mut enc = Encoder::new(written_at);
            enc.source_table(records);
            for r in records {
                enc.record(r);
            }
            put_varint(out, records.len() as u128);
            enc.finish(out);
        }
        Content::HoldAdd(h) => json(out, TAG_HOLD_ADD, h)?,
        Content::HoldRelease(h) => json(out, TAG_HOLD_RELEASE, h)?,
        Content::Tombstone(t) => json(out, TAG_TOMBSTONE, t)?,
        Content::Signature(s) => json(out, TAG_SIGNATURE, s)?,
    }
    Ok(())
}

mod erased {
    pub trait Json {
        fn write(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error>;
    }

    impl<T: serde::Serialize> Json for T {
        fn write(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
            serde_json::to_writer(out, self)
        }
    }
}

/// Decodes a batch body; the error says what is wrong with it.
pub fn decode(body: &[u8]) -> Result<Batch, String> {
    let mut r = Reader { buf: body, at: 0 };
    let seq = u64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
    let prev: Hash = r.take(32)?.try_into().expect("32 bytes");
    let written_at = timestamp(unzigzag(r.varint()?))?;
    let first_record = u64::try_from(r.varint()?).map_err(|_| "record number out of range")?;
    let tag = r.take(1)?[0];
    let rest = &body[r.at..];
    let json_err = |e: serde_json::Error| format!("control batch does not parse: {e}");
    let content = match tag {
        TAG_RECORDS => {
            let count = usize::try_from(r.varint()?).map_err(|_| "impossible record count")?;
            let cols = plain_columns(&body[r.at..])?;
            // Each record has one kind byte; the compressed body can be far smaller than the
            // record count (near-identical lines), so the count is checked after decompression.
            if count > cols[C_KIND].len() {
                return Err(format!(
                    "{count} records but {} kinds in the batch",
                    cols[C_KIND].len()
                ));
            }
            let mut dec = Decoder::new(&cols, written_at)?;
            let mut records = Vec::with_capacity(count);
            for _ in 0..count {
                records.push(dec.record()?);
            }
            dec.finish()?;
            Content::Records { records }
        }
        TAG_HOLD_ADD => Content::HoldAdd(serde_json::from_slice(rest).map_err(json_err)?),
        TAG_HOLD_RELEASE => Content::HoldRelease(serde_json::from_slice(rest).map_err(json_err)?),
        TAG_TOMBSTONE => Content::Tombstone(serde_json::from_slice(rest).map_err(json_err)?),
        TAG_SIGNATURE => Content::Signature(serde_json::from_slice(rest).map_err(json_err)?),
        t => return Err(format!("unknown content tag {t}")),
    };
    Ok(Batch {
        seq,
        prev,
        written_at,
        first_record,
        content,
    })
}

fn timestamp(nanos: i128) -> Result<Timestamp, String> {
    Timestamp::from_nanosecond(nanos).map_err(|_| format!("time {nanos} ns is out of range"))
}

/// Input (as its code), peer, import file and school.
type Source<'a> = (u8, Option<IpAddr>, Option<&'a str>, Option<&'a str>);

fn source_key(r: &Record) -> Source<'_> {
    (
        input_code(r.origin.input),
        r.origin.peer,
        r.origin.import_sha256.as_deref(),
        r.school.as_deref(),
    )
}

struct Encoder<'a> {
    cols: Vec<Vec<u8>>,
    dict: HashMap<&'a str, u32, Fast>,
    sources: HashMap<Source<'a>, u32, Fast>,
    /// The last strings looked up, by address and length: a raw record's protocol and reason
    /// are the same constants in every record, and finding them here skips hashing them.
    recent: [((usize, usize), u32); RECENT],
    /// The previous record's source and its index (records come in runs from one source).
    last_source: Option<(Source<'a>, u32)>,
    last_event: i128,
}

/// Slots of [`Encoder::recent`], a power of two.
const RECENT: usize = 4;

impl<'a> Encoder<'a> {
    fn new(written_at: Timestamp) -> Encoder<'a> {
        Encoder {
            cols: vec![Vec::new(); COLUMNS],
            dict: HashMap::default(),
            sources: HashMap::default(),
            // No string has `usize::MAX` bytes: these slots match nothing.
            recent: [((0, usize::MAX), 0); RECENT],
            last_source: None,
            last_event: written_at.as_nanosecond(),
        }
    }

    fn u8(&mut self, c: usize, v: u8) {
        self.cols[c].push(v);
    }

    fn num(&mut self, c: usize, v: u64) {
        if width(c) == 8 {
            self.cols[c].extend_from_slice(&v.to_le_bytes());
        } else {
            put_varint(&mut self.cols[c], u128::from(v));
        }
    }

    fn opt_num(&mut self, c: usize, v: Option<u64>) {
        self.u8(C_PRESENT, u8::from(v.is_some()));
        if let Some(v) = v {
            self.num(c, v);
        }
    }

    fn port(&mut self, c: usize, v: u16) {
        self.cols[c].extend_from_slice(&v.to_le_bytes());
    }

    fn opt_port(&mut self, c: usize, v: Option<u16>) {
        self.u8(C_PRESENT, u8::from(v.is_some()));
        if let Some(v) = v {
            self.port(c, v);
        }
    }

    fn opt_ip(&mut self, c: usize, v: Option<IpAddr>) {
        match v {
            None => self.u8(C_FAMILY, 0),
            Some(IpAddr::V4(a)) => {
                self.u8(C_FAMILY, 4);
                self.cols[c].extend_from_slice(&a.octets());
            }
            Some(IpAddr::V6(a)) => {
                self.u8(C_FAMILY, 6);
                self.cols[C_V6].extend_from_slice(&a.octets());
            }
        }
    }

    fn ip(&mut self, c: usize, v: IpAddr) {
        self.opt_ip(c, Some(v));
    }

    fn str_index(&mut self, s: &'a str) -> u32 {
        // The same address and length are the same bytes while the records are borrowed.
        let key = (s.as_ptr() as usize, s.len());
        let slot = (key.0 >> 4) & (RECENT - 1);
        if self.recent[slot].0 == key {
            return self.recent[slot].1;
        }
        let next = self.dict.len() as u32;
        let i = *self.dict.entry(s).or_insert_with(|| {
            put_varint(&mut self.cols[C_DICT], s.len() as u128);
            self.cols[C_DICT].extend_from_slice(s.as_bytes());
            next
        });
        self.recent[slot] = (key, i);
        i
    }

    fn str(&mut self, c: usize, s: &'a str) {
        let i = self.str_index(s);
        self.num(c, u64::from(i));
    }

    fn opt_str(&mut self, c: usize, s: &'a Option<String>) {
        let v = s.as_deref().map_or(0, |s| u64::from(self.str_index(s)) + 1);
        self.num(c, v);
    }

    /// A time relative to the record's event time.
    fn opt_time(&mut self, c: usize, event: i128, t: Option<Timestamp>) {
        match t {
            None => put_varint(&mut self.cols[c], 0),
            Some(t) => put_varint(&mut self.cols[c], time_code(t.as_nanosecond() - event) + 1),
        }
    }

    /// Writes the batch's table of sources (input, peer, import and school; a source always
    /// sends the same school), sorted, and puts their strings first in the dictionary: batches
    /// from the same sources then carry the same table, which a sealed block's zstd stores once.
    fn source_table(&mut self, records: &'a [Record]) {
        // Records come in runs from one source: each run is hashed once.
        let mut distinct: std::collections::HashSet<Source<'a>, Fast> = Default::default();
        let mut last = None;
        for key in records.iter().map(source_key) {
            if last != Some(key) {
                distinct.insert(key);
                last = Some(key);
            }
        }
        let mut keys: Vec<Source<'a>> = distinct.into_iter().collect();
        keys.sort_unstable();
        for (i, key) in keys.into_iter().enumerate() {
            let (input, peer, import, school) = key;
            let import = import.map(|s| self.str_index(s));
            let school = school.map(|s| self.str_index(s));
            let t = &mut self.cols[C_SOURCES];
            t.push(input);
            match peer {
                None => t.push(0),
                Some(IpAddr::V4(a)) => {
                    t.push(4);
                    t.extend_from_slice(&a.octets());
                }
                Some(IpAddr::V6(a)) => {
                    t.push(6);
                    t.extend_from_slice(&a.octets());
                }
            }
            put_varint(t, import.map_or(0, |i| u128::from(i) + 1));
            put_varint(t, school.map_or(0, |i| u128::from(i) + 1));
            self.sources.insert(key, i as u32);
        }
    }

    /// The record's source, as an index into the batch's table: one small number per record.
    fn source(&mut self, r: &'a Record) {
        let key = source_key(r);
        let i = match self.last_source {
            Some((last, i)) if last == key => i,
            _ => {
                let i = self.sources[&key];
                self.last_source = Some((key, i));
                i
            }
        };
        self.num(C_SOURCE, u64::from(i));
    }

    fn record(&mut self, r: &'a Record) {
        let event = r.event_time.as_nanosecond();
        put_varint(&mut self.cols[C_EVENT], time_code(event - self.last_event));
        self.last_event = event;
        put_varint(
            &mut self.cols[C_RECEIVE],
            time_code(r.receive_time.as_nanosecond() - event),
        );
        self.source(r);
        match &r.body {
            Body::Flow(f) => {
                self.u8(C_KIND, 0);
                self.u8(C_PROTO, f.protocol);
                self.ip(C_SRC, f.src_ip);
                self.opt_port(C_SPORT, f.src_port);
                self.ip(C_DST, f.dst_ip);
                self.opt_port(C_DPORT, f.dst_port);
                self.opt_num(C_BYTES, f.bytes);
                self.opt_num(C_PACKETS, f.packets);
                self.opt_time(C_START, event, f.start);
                self.opt_time(C_END, event, f.end);
                self.opt_ip(C_EXPORTER, f.exporter);
                self.opt_ip(C_NAT, f.nat_src_ip);
                self.opt_port(C_NATPORT, f.nat_src_port);
                self.opt_str(C_ACTION, &f.action);
                self.opt_str(C_USER, &f.user);
            }
            Body::Nat(n) => {
                self.u8(C_KIND, 1);
                self.u8(C_PRESENT, u8::from(n.protocol.is_some()));
                if let Some(p) = n.protocol {
                    self.u8(C_PROTO, p);
                }
                self.ip(C_IN, n.inside_ip);
                self.opt_port(C_INPORT, n.inside_port);
                self.ip(C_OUT, n.outside_ip);
                self.opt_port(C_OUTPORT, n.outside_port);
                self.opt_ip(C_DST, n.dst_ip);
                self.opt_port(C_DPORT, n.dst_port);
            }
            Body::Session(s) => {
                self.u8(C_KIND, 2);
                self.u8(C_SMALL, session_code(s.status));
                self.str(C_USER, &s.user);
                self.opt_str(C_STR, &s.session_id);
                self.opt_ip(C_ADDR, s.ip);
                self.opt_str(C_STR, &s.mac);
                self.opt_str(C_STR, &s.nas);
                self.opt_num(C_NUM, s.input_octets);
                self.opt_num(C_NUM, s.output_octets);
                self.opt_num(C_NUM, s.duration_secs);
                self.opt_str(C_STR, &s.terminate_cause);
            }
            Body::Lease(l) => {
                self.u8(C_KIND, 3);
                self.u8(C_SMALL, lease_code(l.action));
                self.ip(C_ADDR, l.ip);
                self.str(C_STR, &l.mac);
                self.opt_str(C_STR, &l.hostname);
                self.opt_time(C_TIME, event, l.start);
                self.opt_time(C_TIME, event, l.end);
                self.opt_str(C_STR, &l.server);
            }
            Body::Auth(a) => {
                self.u8(C_KIND, 4);
                self.str(C_USER, &a.user);
                self.u8(C_SMALL, u8::from(a.success));
                self.str(C_STR, &a.service);
                self.opt_ip(C_ADDR, a.ip);
                self.opt_str(C_STR, &a.mac);
                self.opt_str(C_STR, &a.message);
            }
            Body::Proxy(p) => {
                self.u8(C_KIND, 5);
                self.ip(C_SRC, p.client_ip);
                self.opt_str(C_USER, &p.user);
                self.str(C_STR, &p.method);
                self.str(C_STR, &p.url);
                self.opt_port(C_DPORT, p.status);
                self.opt_num(C_BYTES, p.bytes);
                self.opt_num(C_NUM, p.duration_ms);
                self.opt_ip(C_DST, p.server_ip);
            }
            Body::Raw(x) => {
                self.u8(C_KIND, 6);
                self.str(C_STR, &x.protocol);
                put_varint(&mut self.cols[C_DATA], x.data.len() as u128);
                self.cols[C_DATA].extend_from_slice(&x.data);
                let reason = x
                    .reason
                    .as_deref()
                    .map_or(0, |s| u64::from(self.str_index(s)) + 1);
                self.num(C_STR, reason);
            }
            Body::Access(a) => {
                self.u8(C_KIND, 7);
                self.str(C_USER, &a.actor);
                self.str(C_STR, &a.action);
                self.str(C_STR, &a.detail);
            }
            Body::Clock(c) => {
                self.u8(C_KIND, 8);
                self.str(C_STR, &c.server);
                self.opt_num(C_NUM, c.offset_ns.map(signed));
                self.opt_num(C_NUM, c.delay_ns.map(signed));
                self.opt_num(C_NUM, c.stratum.map(u64::from));
                self.opt_str(C_STR, &c.error);
            }
        }
    }

    fn finish(self, out: &mut Vec<u8>) {
        for (id, col) in self.cols.into_iter().enumerate() {
            if col.is_empty() {
                continue;
            }
            out.push(id as u8);
            match width(id) {
                0 => {
                    out.push(1);
                    // The tables are kept plain: the zstd of a sealed block then stores them
                    // once for the several batches it holds.
                    if id == C_DICT || id == C_SOURCES {
                        out.push(MODE_PLAIN);
                        put_varint(out, col.len() as u128);
                        out.extend_from_slice(&col);
                    } else {
                        write_part(out, &col);
                    }
                }
                w => {
                    let at = out.len();
                    let used = if w == 8 {
                        col.chunks(8)
                            .map(|v| {
                                let v = u64::from_le_bytes(v.try_into().expect("8 bytes"));
                                8 - v.leading_zeros() as usize / 8
                            })
                            .max()
                            .unwrap_or(0)
                            .max(1)
                    } else {
                        w
                    };
                    out.push(used as u8);
                    let mut plane = Vec::with_capacity(col.len() / w);
                    for p in 0..used {
                        plane.clear();
                        plane.extend(col.iter().skip(p).step_by(w));
                        write_part(out, &plane);
                    }
                    // Ports of a few values (443, 80, 53) compress better whole.
                    if w == 2 {
                        let mut whole = vec![id as u8, WHOLE];
                        write_part(&mut whole, &col);
                        if whole.len() < out.len() - at {
                            out.truncate(at - 1);
                            out.extend_from_slice(&whole);
                        }
                    }
                }
            }
        }
    }
}

thread_local! {
    /// zstd contexts are costly to create (hundreds of KiB each): one per thread, reused.
    static PACKER: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static UNPACKER: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// zstd at `level`, with this thread's compression context.
pub(crate) fn pack(plain: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    PACKER.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(zstd::bulk::Compressor::new(level)?);
        }
        let c = c.as_mut().expect("set above");
        c.set_compression_level(level)?;
        c.compress(plain)
    })
}

/// Decompresses `packed`, refusing more than `capacity` bytes, with this thread's context.
pub(crate) fn unpack(packed: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    UNPACKER.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(zstd::bulk::Decompressor::new()?);
        }
        c.as_mut().expect("set above").decompress(packed, capacity)
    })
}

/// Writes one part of a column (the column, or one of its byte planes): as is, or
/// zstd-compressed when that is smaller, so that each part gets its own entropy tables.
fn write_part(out: &mut Vec<u8>, plain: &[u8]) {
    let packed = (plain.len() >= MIN_PACKED)
        .then(|| pack(plain, ZSTD_LEVEL).ok())
        .flatten()
        .filter(|p| p.len() < plain.len());
    match packed {
        Some(p) => {
            out.push(MODE_ZSTD);
            put_varint(out, plain.len() as u128);
            put_varint(out, p.len() as u128);
            out.extend_from_slice(&p);
        }
        None => {
            out.push(MODE_PLAIN);
            put_varint(out, plain.len() as u128);
            out.extend_from_slice(plain);
        }
    }
}

fn read_part(r: &mut Reader<'_>, id: usize) -> Result<Vec<u8>, String> {
    let mode = r.take(1)?[0];
    let len = usize::try_from(r.varint()?).map_err(|_| "impossible column length")?;
    if len > crate::batch::MAX_BODY {
        return Err(format!("column {id} claims {len} bytes"));
    }
    match mode {
        MODE_PLAIN => Ok(r.take(len)?.to_vec()),
        MODE_ZSTD => {
            let packed = usize::try_from(r.varint()?).map_err(|_| "impossible column length")?;
            let v = unpack(r.take(packed)?, len)
                .map_err(|e| format!("column {id} does not decompress: {e}"))?;
            if v.len() != len {
                return Err(format!(
                    "column {id} decompresses to {} bytes, not {len}",
                    v.len()
                ));
            }
            Ok(v)
        }
        m => Err(format!("column {id} has unknown mode {m}")),
    }
}

/// A column is stored as is, or zstd-compressed on its own (so that each column gets its own
/// entropy tables) when that is smaller.
const MODE_PLAIN: u8 = 0;
const MODE_ZSTD: u8 = 1;
/// The parts count of a fixed-width column stored in value order, as one part.
const WHOLE: u8 = 0x80;
/// Shorter columns are not worth a zstd frame.
const MIN_PACKED: usize = 64;
const ZSTD_LEVEL: i32 = 3;

/// The columns of a records body, decompressed and in value order (byte planes put back,
/// numbers widened to 8 bytes).
fn plain_columns(body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut r = Reader { buf: body, at: 0 };
    let mut cols = vec![Vec::new(); COLUMNS];
    let mut last = None;
    while !r.done() {
        let id = usize::from(r.take(1)?[0]);
        if id >= COLUMNS || last.is_some_and(|l| id <= l) {
            return Err(format!("column {id} is unknown or out of order"));
        }
        last = Some(id);
        let parts = r.take(1)?[0];
        let w = width(id);
        if parts == WHOLE && w == 2 {
            cols[id] = read_part(&mut r, id)?;
            if cols[id].len() % w != 0 {
                return Err(format!("column {id} is not a whole number of values"));
            }
            continue;
        }
        let parts = usize::from(parts);
        let ok = match w {
            0 => parts == 1,
            8 => (1..=8).contains(&parts),
            w => parts == w,
        };
        if !ok {
            return Err(format!("column {id} has {parts} parts"));
        }
        if w == 0 {
            cols[id] = read_part(&mut r, id)?;
            continue;
        }
        let mut v = Vec::new();
        let mut n = 0;
        for p in 0..parts {
            let plane = read_part(&mut r, id)?;
            if p == 0 {
                n = plane.len();
                v = vec![0u8; n * w];
            }
            if plane.len() != n || n == 0 {
                return Err(format!("column {id} has byte planes of unequal lengths"));
            }
            for (i, b) in plane.iter().enumerate() {
                v[i * w + p] = *b;
            }
        }
        cols[id] = v;
    }
    Ok(cols)
}

fn input_code(i: Input) -> u8 {
    match i {
        Input::SyslogUdp => 0,
        Input::SyslogTcp => 1,
        Input::SyslogTls => 2,
        Input::Relp => 3,
        Input::Radius => 4,
        Input::Netflow => 5,
        Input::Ipfix => 6,
        Input::Import => 7,
        Input::Store => 8,
    }
}

const INPUTS: [Input; 9] = [
    Input::SyslogUdp,
    Input::SyslogTcp,
    Input::SyslogTls,
    Input::Relp,
    Input::Radius,
    Input::Netflow,
    Input::Ipfix,
    Input::Import,
    Input::Store,
];

fn session_code(s: SessionStatus) -> u8 {
    match s {
        SessionStatus::Start => 0,
        SessionStatus::Interim => 1,
        SessionStatus::Stop => 2,
    }
}

const SESSIONS: [SessionStatus; 3] = [
    SessionStatus::Start,
    SessionStatus::Interim,
    SessionStatus::Stop,
];

fn lease_code(a: LeaseAction) -> u8 {
    match a {
        LeaseAction::Assign => 0,
        LeaseAction::Renew => 1,
        LeaseAction::Release => 2,
        LeaseAction::Expire => 3,
    }
}

const LEASES: [LeaseAction; 4] = [
    LeaseAction::Assign,
    LeaseAction::Renew,
    LeaseAction::Release,
    LeaseAction::Expire,
];

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() - self.at < n {
            return Err(format!(
                "ends {} bytes early",
                n - (self.buf.len() - self.at)
            ));
        }
        let s = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn varint(&mut self) -> Result<u128, String> {
        let mut v = 0u128;
        for shift in (0..128).step_by(7) {
            let b = self.take(1)?[0];
            v |= u128::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint is too long".into())
    }

    fn done(&self) -> bool {
        self.at == self.buf.len()
    }
}

struct Decoder<'a> {
    cols: Vec<Reader<'a>>,
    /// The batch's table of input, peer, import and school.
    sources: Vec<(Origin, Option<String>)>,
    dict: Vec<&'a str>,
    last_event: i128,
}

impl<'a> Decoder<'a> {
    fn new(cols: &'a [Vec<u8>], written_at: Timestamp) -> Result<Decoder<'a>, String> {
        let mut dict = Vec::new();
        let mut d = Reader {
            buf: &cols[C_DICT],
            at: 0,
        };
        while !d.done() {
            let len = usize::try_from(d.varint()?).map_err(|_| "impossible string length")?;
            let s = std::str::from_utf8(d.take(len)?).map_err(|_| "a string is not UTF-8")?;
            dict.push(s);
        }
        let mut sources = Vec::new();
        let mut t = Reader {
            buf: &cols[C_SOURCES],
            at: 0,
        };
        let string = |i: u128| -> Result<Option<String>, String> {
            match i {
                0 => Ok(None),
                i => usize::try_from(i - 1)
                    .ok()
                    .and_then(|i| dict.get(i))
                    .map(|s| Some((*s).to_owned()))
                    .ok_or_else(|| format!("string {i} is not in the batch's dictionary")),
            }
        };
        while !t.done() {
            let code = t.take(1)?[0];
            let input = *INPUTS
                .get(usize::from(code))
                .ok_or_else(|| format!("input {code} is unknown"))?;
            let peer = match t.take(1)?[0] {
                0 => None,
                4 => Some(IpAddr::V4(Ipv4Addr::from(
                    <[u8; 4]>::try_from(t.take(4)?).expect("4 bytes"),
                ))),
                6 => Some(IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(t.take(16)?).expect("16 bytes"),
                ))),
                f => return Err(format!("address family {f}")),
            };
            let import = string(t.varint()?)?;
            let school = string(t.varint()?)?;
            sources.push((
                Origin {
                    input,
                    peer,
                    import_sha256: import,
                },
                school,
            ));
        }
        Ok(Decoder {
            cols: cols.iter().map(|buf| Reader { buf, at: 0 }).collect(),
            sources,
            dict,
            last_event: written_at.as_nanosecond(),
        })
    }

    fn finish(&self) -> Result<(), String> {
        for (id, c) in self.cols.iter().enumerate() {
            if id != C_DICT && id != C_SOURCES && !c.done() {
                return Err(format!("column {id} holds more than its records"));
            }
        }
        Ok(())
    }

    fn u8(&mut self, c: usize) -> Result<u8, String> {
        Ok(self.cols[c].take(1)?[0])
    }

    fn num(&mut self, c: usize) -> Result<u64, String> {
        if width(c) == 8 {
            return self.fixed::<8>(c).map(u64::from_le_bytes);
        }
        u64::try_from(self.cols[c].varint()?).map_err(|_| "number out of range".into())
    }

    fn present(&mut self) -> Result<bool, String> {
        match self.u8(C_PRESENT)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!("presence byte {b}")),
        }
    }

    fn opt_num(&mut self, c: usize) -> Result<Option<u64>, String> {
        if self.present()? {
            self.num(c).map(Some)
        } else {
            Ok(None)
        }
    }

    fn fixed<const N: usize>(&mut self, c: usize) -> Result<[u8; N], String> {
        Ok(self.cols[c].take(N)?.try_into().expect("N bytes"))
    }

    fn port(&mut self, c: usize) -> Result<u16, String> {
        self.fixed::<2>(c).map(u16::from_le_bytes)
    }

    fn opt_port(&mut self, c: usize) -> Result<Option<u16>, String> {
        if self.present()? {
            self.port(c).map(Some)
        } else {
            Ok(None)
        }
    }

    fn opt_ip(&mut self, c: usize) -> Result<Option<IpAddr>, String> {
        match self.u8(C_FAMILY)? {
            0 => Ok(None),
            4 => Ok(Some(IpAddr::V4(Ipv4Addr::from(self.fixed::<4>(c)?)))),
            6 => {
                let b: [u8; 16] = self.cols[C_V6].take(16)?.try_into().expect("16 bytes");
                Ok(Some(IpAddr::V6(Ipv6Addr::from(b))))
            }
            f => Err(format!("address family {f}")),
        }
    }

    fn ip(&mut self, c: usize) -> Result<IpAddr, String> {
        self.opt_ip(c)?
            .ok_or_else(|| "a required address is missing".into())
    }

    fn string(&self, i: u64) -> Result<String, String> {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.dict.get(i))
            .map(|s| (*s).to_owned())
            .ok_or_else(|| format!("string {i} is not in the batch's dictionary"))
    }

    fn str(&mut self, c: usize) -> Result<String, String> {
        let i = self.num(c)?;
        self.string(i)
    }

    fn opt_str(&mut self, c: usize) -> Result<Option<String>, String> {
        match self.num(c)? {
            0 => Ok(None),
            i => self.string(i - 1).map(Some),
        }
    }

    fn opt_time(&mut self, c: usize, event: i128) -> Result<Option<Timestamp>, String> {
        match self.cols[c].varint()? {
            0 => Ok(None),
            code => timestamp(shifted(event, code - 1)?).map(Some),
        }
    }

    fn small<T: Copy>(&mut self, table: &[T]) -> Result<T, String> {
        let b = self.u8(C_SMALL)?;
        table
            .get(usize::from(b))
            .copied()
            .ok_or_else(|| format!("code {b} is unknown"))
    }

    fn record(&mut self) -> Result<Record, String> {
        let event = shifted(self.last_event, self.cols[C_EVENT].varint()?)?;
        self.last_event = event;
        let receive = shifted(event, self.cols[C_RECEIVE].varint()?)?;
        let i = self.num(C_SOURCE)?;
        let (origin, school) = usize::try_from(i)
            .ok()
            .and_then(|i| self.sources.get(i))
            .cloned()
            .ok_or_else(|| format!("source {i} is not in the batch's table"))?;
        let body = match self.u8(C_KIND)? {
            0 => Body::Flow(Flow {
                protocol: self.u8(C_PROTO)?,
                src_ip: self.ip(C_SRC)?,
                src_port: self.opt_port(C_SPORT)?,
                dst_ip: self.ip(C_DST)?,
                dst_port: self.opt_port(C_DPORT)?,
                bytes: self.opt_num(C_BYTES)?,
                packets: self.opt_num(C_PACKETS)?,
                start: self.opt_time(C_START, event)?,
                end: self.opt_time(C_END, event)?,
                exporter: self.opt_ip(C_EXPORTER)?,
                nat_src_ip: self.opt_ip(C_NAT)?,
                nat_src_port: self.opt_port(C_NATPORT)?,
                action: self.opt_str(C_ACTION)?,
                user: self.opt_str(C_USER)?,
            }),
            1 => Body::Nat(Nat {
                protocol: if self.present()? {
                    Some(self.u8(C_PROTO)?)
                } else {
                    None
                },
                inside_ip: self.ip(C_IN)?,
                inside_port: self.opt_port(C_INPORT)?,
                outside_ip: self.ip(C_OUT)?,
                outside_port: self.opt_port(C_OUTPORT)?,
                dst_ip: self.opt_ip(C_DST)?,
                dst_port: self.opt_port(C_DPORT)?,
            }),
            2 => Body::Session(Session {
                status: self.small(&SESSIONS)?,
                user: self.str(C_USER)?,
                session_id: self.opt_str(C_STR)?,
                ip: self.opt_ip(C_ADDR)?,
                mac: self.opt_str(C_STR)?,
                nas: self.opt_str(C_STR)?,
                input_octets: self.opt_num(C_NUM)?,
                output_octets: self.opt_num(C_NUM)?,
                duration_secs: self.opt_num(C_NUM)?,
                terminate_cause: self.opt_str(C_STR)?,
            }),
            3 => Body::Lease(Lease {
                action: self.small(&LEASES)?,
                ip: self.ip(C_ADDR)?,
                mac: self.str(C_STR)?,
                hostname: self.opt_str(C_STR)?,
                start: self.opt_time(C_TIME, event)?,
                end: self.opt_time(C_TIME, event)?,
                server: self.opt_str(C_STR)?,
            }),
            4 => Body::Auth(AuthEvent {
                user: self.str(C_USER)?,
                success: self.small(&[false, true])?,
                service: self.str(C_STR)?,
                ip: self.opt_ip(C_ADDR)?,
                mac: self.opt_str(C_STR)?,
                message: self.opt_str(C_STR)?,
            }),
            5 => Body::Proxy(ProxyRequest {
                client_ip: self.ip(C_SRC)?,
                user: self.opt_str(C_USER)?,
                method: self.str(C_STR)?,
                url: self.str(C_STR)?,
                status: self.opt_port(C_DPORT)?,
                bytes: self.opt_num(C_BYTES)?,
                duration_ms: self.opt_num(C_NUM)?,
                server_ip: self.opt_ip(C_DST)?,
            }),
            6 => Body::Raw(Raw {
                protocol: self.str(C_STR)?.into(),
                data: {
                    let n = usize::try_from(self.cols[C_DATA].varint()?)
                        .map_err(|_| "impossible data length")?;
                    self.cols[C_DATA].take(n)?.to_vec()
                },
                reason: self.opt_str(C_STR)?.map(Into::into),
            }),
            7 => Body::Access(Access {
                actor: self.str(C_USER)?,
                action: self.str(C_STR)?,
                detail: self.str(C_STR)?,
            }),
            8 => Body::Clock(ClockOffset {
                server: self.str(C_STR)?,
                offset_ns: self.opt_num(C_NUM)?.map(unsigned),
                delay_ns: self.opt_num(C_NUM)?.map(unsigned),
                stratum: match self.opt_num(C_NUM)? {
                    None => None,
                    Some(n) => Some(u8::try_from(n).map_err(|_| "stratum out of range")?),
                },
                error: self.opt_str(C_STR)?,
            }),
            k => return Err(format!("record kind {k} is unknown")),
        };
        Ok(Record {
            event_time: timestamp(event)?,
            receive_time: timestamp(receive)?,
            origin,
            school,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::GENESIS;
    use crate::testing::flow;
    use jiff::SignedDuration;

    fn every_kind() -> Vec<Record> {
        let base = flow(7);
        let at = base.event_time;
        let v6: IpAddr = "2001:db8::5".parse().unwrap();
        let with = |body: Body, shift: i64| Record {
            event_time: at + SignedDuration::from_nanos(shift),
            receive_time: at - SignedDuration::from_micros(shift),
            body,
            ..base.clone()
        };
        let Body::Flow(f) = &base.body else {
            unreachable!()
        };
        vec![
            base.clone(),
            with(
                Body::Flow(Flow {
                    src_ip: v6,
                    src_port: None,
                    start: Some(at - SignedDuration::from_millis(1500)),
                    exporter: Some(v6),
                    nat_src_ip: Some("203.0.113.9".parse().unwrap()),
                    nat_src_port: Some(61000),
                    action: Some("accept".into()),
                    user: Some("somchai".into()),
                    ..f.clone()
                }),
                -3,
            ),
            with(
                Body::Nat(Nat {
                    protocol: Some(17),
                    inside_ip: "10.0.0.2".parse().unwrap(),
                    inside_port: Some(5353),
                    outside_ip: "203.0.113.9".parse().unwrap(),
                    outside_port: None,
                    dst_ip: None,
                    dst_port: Some(53),
                }),
                1_000_000_007,
            ),
            Record {
                origin: Origin {
                    input: Input::Radius,
                    peer: None,
                    import_sha256: Some("ab".repeat(32)),
                },
                school: None,
                ..with(
                    Body::Session(Session {
                        status: SessionStatus::Stop,
                        user: "somchai".into(),
                        session_id: Some("s1".into()),
                        ip: Some(v6),
                        mac: Some("02:00:00:00:00:01".into()),
                        nas: None,
                        input_octets: Some(u64::MAX),
                        output_octets: Some(0),
                        duration_secs: None,
                        terminate_cause: Some("User-Request".into()),
                    }),
                    0,
                )
            },
            with(
                Body::Lease(Lease {
                    action: LeaseAction::Expire,
                    ip: "10.0.0.2".parse().unwrap(),
                    mac: "02:00:00:00:00:01".into(),
                    hostname: Some("".into()),
                    start: Some(Timestamp::MIN),
                    end: Some(Timestamp::MAX),
                    server: Some("dhcp1".into()),
                }),
                5,
            ),
            with(
                Body::Auth(AuthEvent {
                    user: "สมชาย".into(),
                    success: true,
                    service: "hotspot".into(),
                    ip: None,
                    mac: None,
                    message: Some("ok".into()),
                }),
                0,
            ),
            with(
                Body::Proxy(ProxyRequest {
                    client_ip: "10.0.0.3".parse().unwrap(),
                    user: None,
                    method: "GET".into(),
                    url: "http://example.com/".into(),
                    status: Some(200),
                    bytes: Some(1),
                    duration_ms: Some(12),
                    server_ip: Some(v6),
                }),
                0,
            ),
            with(
                Body::Raw(Raw {
                    protocol: "syslog".into(),
                    data: vec![0, 255, 10, 13],
                    reason: None,
                }),
                0,
            ),
            with(
                Body::Access(Access {
                    actor: "officer".into(),
                    action: "search".into(),
                    detail: "--ip 10.0.0.2".into(),
                }),
                0,
            ),
            with(
                Body::Clock(ClockOffset {
                    server: "127.0.0.1:123".into(),
                    offset_ns: Some(-50_000_123),
                    delay_ns: Some(i64::MAX),
                    stratum: Some(2),
                    error: None,
                }),
                0,
            ),
            with(
                Body::Clock(ClockOffset {
                    server: "ntp.example".into(),
                    offset_ns: None,
                    delay_ns: None,
                    stratum: None,
                    error: Some("no answer within 3s".into()),
                }),
                0,
            ),
        ]
    }

    fn batch(records: Vec<Record>) -> Batch {
        Batch {
            seq: 9,
            prev: [7; 32],
            written_at: Timestamp::UNIX_EPOCH,
            first_record: 1234,
            content: Content::Records { records },
        }
    }

    #[test]
    fn every_kind_and_field_round_trips() {
        for records in [
            vec![],
            every_kind(),
            every_kind().into_iter().rev().collect(),
        ] {
            let b = batch(records);
            assert_eq!(decode(&encode(&b).unwrap()).unwrap(), b);
        }
        let sig = Batch {
            prev: GENESIS,
            content: Content::Signature(crate::batch::Signature {
                head_seq: 8,
                head_hash: [1; 32],
                records: 3,
                signed_at: Timestamp::UNIX_EPOCH,
                sig: "00".into(),
            }),
            ..batch(vec![])
        };
        assert_eq!(decode(&encode(&sig).unwrap()).unwrap(), sig);
    }

    #[test]
    fn bytes_left_over_or_missing_do_not_decode() {
        let body = encode(&batch(every_kind())).unwrap();
        for cut in 0..body.len() {
            assert!(decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = body.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }

    /// Near-identical records compress to fewer bytes than there are records; they must still
    /// read back (a collector flooded with one repeated line stores such batches).
    #[test]
    fn more_records_than_compressed_bytes_round_trip() {
        let records: Vec<Record> = (0..20_000).map(|_| flow(0)).collect();
        let b = batch(records);
        let body = encode(&b).unwrap();
        assert!(
            body.len() < 20_000,
            "the case needs a body smaller than its count: {}",
            body.len()
        );
        assert_eq!(decode(&body).unwrap(), b);
    }

    /// The encoder finds repeated strings by address and repeated sources by the last record's:
    /// the body must be the same bytes as when every string is its own copy, and sources that
    /// come back after others must keep their first index.
    #[test]
    fn strings_and_sources_met_again_encode_as_when_every_one_is_a_copy() {
        use std::borrow::Cow;
        let base = flow(1);
        let raw =
            |i: usize, protocol: Cow<'static, str>, reason: Option<Cow<'static, str>>| Record {
                origin: Origin {
                    peer: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, (i / 3 % 4) as u8))),
                    ..base.origin.clone()
                },
                school: i.is_multiple_of(5).then(|| "school-1".to_string()),
                body: Body::Raw(Raw {
                    protocol,
                    data: vec![b'x'; i % 7],
                    reason,
                }),
                ..base.clone()
            };
        let shared: Vec<Record> = (0..300)
            .map(|i| {
                let reason = match i % 3 {
                    0 => None,
                    1 => Some(Cow::Borrowed("unrecognised")),
                    _ => Some(Cow::Owned(format!("reason {}", i % 4))),
                };
                raw(
                    i,
                    Cow::Borrowed(if i.is_multiple_of(11) {
                        "radius"
                    } else {
                        "syslog"
                    }),
                    reason,
                )
            })
            .collect();
        let copies: Vec<Record> = shared
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let Body::Raw(x) = &r.body else {
                    unreachable!()
                };
                let own = |s: &str| Cow::Owned(s.to_string());
                raw(i, own(&x.protocol), x.reason.as_deref().map(own))
            })
            .collect();
        let (a, b) = (batch(shared), batch(copies));
        let body = encode(&a).unwrap();
        assert_eq!(body, encode(&b).unwrap());
        assert_eq!(decode(&body).unwrap(), b);
    }

    #[test]
    fn a_flow_takes_few_bytes() {
        let records: Vec<Record> = (0..2000).map(flow).collect();
        let body = encode(&batch(records)).unwrap();
        let json = serde_json::to_vec(&batch((0..2000).map(flow).collect())).unwrap();
        assert!(
            body.len() * 6 < json.len(),
            "{} bytes, JSON {}",
            body.len(),
            json.len()
        );
    }
}
