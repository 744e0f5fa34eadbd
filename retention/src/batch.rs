//! Batches, the unit of the hash chain, and their framing on disk.
//!
//! A frame is `"KNB2"`, the body length (u32, little-endian), the body (the [`Batch`] in the
//! binary, column-oriented encoding of [`crate::columns`]) and the SHA-256 of the body (32
//! bytes). The hash of a batch is that SHA-256; every batch
//! names the hash of the one before it in `prev` (all zeros for batch 0), so changing, removing
//! or reordering any batch breaks the chain at a place that can be named.

use std::net::IpAddr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::record::Record;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The `prev` of batch 0.
pub const GENESIS: Hash = [0; 32];

pub const MAGIC: &[u8; 4] = b"KNB2";
/// Bytes around a body: magic, length and hash.
pub const FRAME_OVERHEAD: usize = 4 + 4 + 32;
/// A larger body is refused on write and taken as damage on read.
pub const MAX_BODY: usize = 256 << 20;

/// One link of the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Position in the chain, from 0, without gaps.
    pub seq: u64,
    /// The hash of batch `seq - 1`.
    #[serde(with = "hex_hash")]
    pub prev: Hash,
    /// The store's clock when the batch was written.
    pub written_at: Timestamp,
    /// The number of records stored before this batch (the first record's number).
    pub first_record: u64,
    pub content: Content,
}

/// What a batch carries: records, or one of the store's own control entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    Records { records: Vec<Record> },
    HoldAdd(Hold),
    HoldRelease(HoldRelease),
    Tombstone(Tombstone),
    Signature(Signature),
}

impl Content {
    pub fn record_count(&self) -> u64 {
        match self {
            Content::Records { records } => records.len() as u64,
            _ => 0,
        }
    }

    /// The records it carries (none for a control entry).
    pub fn into_records(self) -> Vec<Record> {
        match self {
            Content::Records { records } => records,
            _ => Vec::new(),
        }
    }
}

/// A legal hold: records of a case that purge must keep until `until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    pub id: String,
    /// The official case or order number.
    pub case: String,
    /// The event-time range the order concerns.
    pub from: Timestamp,
    pub to: Timestamp,
    pub ip: Option<IpAddr>,
    pub user: Option<String>,
    /// Kept at least until then; at most two years after the hold was placed.
    pub until: Timestamp,
    pub reason: String,
    pub actor: String,
    pub created: Timestamp,
}

/// The end of a hold before its `until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldRelease {
    pub id: String,
    pub actor: String,
    pub reason: String,
    pub released_at: Timestamp,
}

/// What remains in the chain of a segment purged past retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The segment file that was removed.
    pub segment: String,
    pub first_seq: u64,
    pub last_seq: u64,
    #[serde(with = "hex_hash")]
    pub prev: Hash,
    #[serde(with = "hex_hash")]
    pub last_hash: Hash,
    pub records: u64,
    pub min_receive: Option<Timestamp>,
    pub max_receive: Option<Timestamp>,
    pub retention_days: u32,
    pub purged_at: Timestamp,
    pub actor: String,
    /// The control batches (holds, releases, tombstones, signatures) the segment held, so
    /// that holds survive the purge of the segment that placed them.
    pub carried: Vec<Batch>,
    /// Ed25519 over [`Tombstone::message`], hex.
    pub sig: String,
}

impl Tombstone {
    /// The bytes the tombstone's signature covers.
    pub fn message(&self) -> Vec<u8> {
        let mut m = b"khetnet-retention/tombstone/v1\0".to_vec();
        m.extend_from_slice(self.segment.as_bytes());
        m.push(0);
        m.extend_from_slice(&self.first_seq.to_le_bytes());
        m.extend_from_slice(&self.last_seq.to_le_bytes());
        m.extend_from_slice(&self.prev);
        m.extend_from_slice(&self.last_hash);
        m.extend_from_slice(&self.records.to_le_bytes());
        m.extend_from_slice(self.purged_at.to_string().as_bytes());
        m
    }
}

/// A signature of the chain head: batch `head_seq` with hash `head_hash` (the batch just before).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    pub head_seq: u64,
    #[serde(with = "hex_hash")]
    pub head_hash: Hash,
    pub records: u64,
    pub signed_at: Timestamp,
    /// Ed25519 over [`Signature::message`], hex.
    pub sig: String,
}

impl Signature {
    pub fn message(&self) -> Vec<u8> {
        head_message(self.head_seq, &self.head_hash, self.records, self.signed_at)
    }
}

/// The bytes a head signature covers.
pub fn head_message(seq: u64, hash: &Hash, records: u64, at: Timestamp) -> Vec<u8> {
    let mut m = b"khetnet-retention/head/v1\0".to_vec();
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&records.to_le_bytes());
    m.extend_from_slice(at.to_string().as_bytes());
    m
}

/// Encodes a batch as a frame; returns the frame and the batch's hash.
pub fn encode(batch: &Batch) -> Result<(Vec<u8>, Hash)> {
    let content = encode_content(&batch.content, batch.written_at)?;
    frame(
        batch.seq,
        &batch.prev,
        batch.written_at,
        batch.first_record,
        &content,
    )
}

/// The part of a body that does not depend on the batch's place in the chain (see
/// [`crate::columns::encode_content`]): the costly part of encoding, which needs no lock.
pub fn encode_content(content: &Content, written_at: Timestamp) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    crate::columns::encode_content(&mut out, content, written_at).map_err(|source| {
        Error::Encode {
            what: "batch",
            source,
        }
    })?;
    Ok(out)
}

/// The frame of the batch at `seq` after `prev` whose content was encoded (with the same
/// `written_at`) by [`encode_content`]; returns the frame and the batch's hash.
pub fn frame(
    seq: u64,
    prev: &Hash,
    written_at: Timestamp,
    first_record: u64,
    content: &[u8],
) -> Result<(Vec<u8>, Hash)> {
    let mut header = Vec::with_capacity(64);
    crate::columns::encode_header(&mut header, seq, prev, written_at, first_record);
    let len = header.len() + content.len();
    if len > MAX_BODY {
        return Err(Error::invalid(
            "batch",
            format!("{len} bytes encoded, more than {MAX_BODY}; append fewer records at once"),
        ));
    }
    let hash: Hash = Sha256::new()
        .chain_update(&header)
        .chain_update(content)
        .finalize()
        .into();
    let mut frame = Vec::with_capacity(len + FRAME_OVERHEAD);
    frame.extend_from_slice(MAGIC);
    frame.extend_from_slice(&(len as u32).to_le_bytes());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(content);
    frame.extend_from_slice(&hash);
    Ok((frame, hash))
}

/// What the bytes at the start of a buffer hold.
#[derive(Debug)]
pub enum Decoded {
    /// A whole, intact frame of `len` bytes.
    Frame {
        batch: Box<Batch>,
        hash: Hash,
        len: usize,
    },
    /// The buffer ends inside a frame (a torn write, or a write in progress).
    Incomplete { have: usize, need: usize },
    /// The bytes are not an intact frame.
    Corrupt(String),
}

/// Decodes the frame at the start of `buf` (which must not be empty).
pub fn decode(buf: &[u8]) -> Decoded {
    if buf.len() < 8 {
        if buf.len() < 4 && MAGIC.starts_with(buf) || buf.len() >= 4 && &buf[..4] == MAGIC {
            return Decoded::Incomplete {
                have: buf.len(),
                need: 8,
            };
        }
        return Decoded::Corrupt("not a batch frame (bad magic)".into());
    }
    if &buf[..4] != MAGIC {
        return Decoded::Corrupt("not a batch frame (bad magic)".into());
    }
    let len = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes")) as usize;
    if len > MAX_BODY {
        return Decoded::Corrupt(format!("frame length {len} is impossible"));
    }
    let need = 8 + len + 32;
    if buf.len() < need {
        return Decoded::Incomplete {
            have: buf.len(),
            need,
        };
    }
    let body = &buf[8..8 + len];
    let stored: Hash = buf[8 + len..need].try_into().expect("32 bytes");
    let hash: Hash = Sha256::digest(body).into();
    if hash != stored {
        return Decoded::Corrupt("content does not match its SHA-256 (altered)".into());
    }
    match crate::columns::decode(body) {
        Ok(batch) => Decoded::Frame {
            batch: Box::new(batch),
            hash,
            len: need,
        },
        Err(e) => Decoded::Corrupt(format!("hash matches but the body does not decode: {e}")),
    }
}

/// Serde as lower-case hex for hashes.
pub mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(serde::de::Error::custom)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("a hash has 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seq: u64) -> Batch {
        Batch {
            seq,
            prev: GENESIS,
            written_at: Timestamp::UNIX_EPOCH,
            first_record: 0,
            content: Content::Records { records: vec![] },
        }
    }

    #[test]
    fn a_frame_decodes_to_the_batch_and_hash_it_was_encoded_from() {
        let (frame, hash) = encode(&batch(7)).unwrap();
        match decode(&frame) {
            Decoded::Frame {
                batch: b,
                hash: h,
                len,
            } => {
                assert_eq!(*b, batch(7));
                assert_eq!(h, hash);
                assert_eq!(len, frame.len());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_prefix_is_incomplete_and_every_flipped_byte_is_caught() {
        let (frame, _) = encode(&batch(1)).unwrap();
        for cut in 1..frame.len() {
            assert!(
                matches!(decode(&frame[..cut]), Decoded::Incomplete { .. }),
                "prefix of {cut} bytes"
            );
        }
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x01;
            assert!(
                !matches!(decode(&bad), Decoded::Frame { .. }),
                "flip at byte {i} went unnoticed"
            );
        }
    }
}
