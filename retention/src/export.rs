//! Evidence export: the records of a query as CSV or JSON Lines, and a manifest signed with the
//! store key (query, who, when, counts, SHA-256 of every file, chain positions) that
//! `verify-export` checks without the store.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::query::{self, Hit, Query};
use crate::record::{Body, Term};
use crate::signing;
use crate::store::{Store, shown};

pub const MANIFEST: &str = "manifest.json";
pub const MANIFEST_SIG: &str = "manifest.sig";

/// The file format of exported records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Jsonl,
}

/// One exported file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
    pub records: u64,
}

/// Where the export stands in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainPosition {
    /// The last batch in the store when the export was made, and its hash.
    pub head_batch: Option<u64>,
    pub head_hash: Option<String>,
    /// The records exported, by their numbers in the store.
    pub first_record_no: Option<u64>,
    pub last_record_no: Option<u64>,
    /// The batches they came from.
    pub batches: Vec<u64>,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub query: String,
    pub actor: String,
    pub created: Timestamp,
    pub store_public_key: String,
    pub records: u64,
    pub by_kind: BTreeMap<String, u64>,
    pub files: Vec<FileEntry>,
    pub chain: ChainPosition,
}

impl Store {
    /// Exports the records matching `q` into `out` (which must not exist or be empty).
    pub fn export(
        &self,
        actor: &str,
        q: &Query,
        format: Format,
        out: &Path,
        progress: bool,
    ) -> Result<Manifest> {
        if out.exists()
            && std::fs::read_dir(out)
                .map_err(|e| Error::io(out, e))?
                .next()
                .is_some()
        {
            return Err(Error::invalid(
                "export directory",
                format!(
                    "{} is not empty; name a new directory with --out",
                    out.display()
                ),
            ));
        }
        self.log_access(
            actor,
            "export",
            &format!(
                "{} --format {format:?} --out {}",
                q.describe(),
                out.display()
            ),
        )?;
        fsutil::create_dir(out)?;
        let view = self.view()?;
        let bar = if progress {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_message(format!("searching {} segments", view.segments.len()));
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let (hits, _) = query::search(&view, q)?;
        bar.finish_and_clear();
        let name = match format {
            Format::Csv => "records.csv",
            Format::Jsonl => "records.jsonl",
        };
        let path = out.join(name);
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = HashingWriter {
            inner: BufWriter::new(file),
            hasher: Sha256::new(),
            bytes: 0,
        };
        let io = |e| Error::io(&path, e);
        if format == Format::Csv {
            w.write_all(CSV_HEADER.as_bytes()).map_err(io)?;
        }
        let mut by_kind = BTreeMap::new();
        for h in &hits {
            *by_kind.entry(h.record.kind().to_string()).or_insert(0) += 1;
            match format {
                Format::Csv => w.write_all(csv_line(h).as_bytes()).map_err(io)?,
                Format::Jsonl => {
                    serde_json::to_writer(&mut w, h).map_err(|source| Error::Encode {
                        what: "export line",
                        source,
                    })?;
                    w.write_all(b"\n").map_err(io)?;
                }
            }
        }
        w.inner.flush().map_err(io)?;
        w.inner.get_ref().sync_all().map_err(io)?;
        let head = view.live.last().map(|c| (c.batch.seq, c.hash)).or(view
            .segments
            .last()
            .map(|s| (s.index.last_seq, s.index.last_hash)));
        let mut batches: Vec<u64> = hits.iter().map(|h| h.batch).collect();
        batches.sort_unstable();
        batches.dedup();
        let manifest = Manifest {
            format: "khetnet-export/1".into(),
            query: q.describe(),
            actor: actor.into(),
            created: self.now(),
            store_public_key: self.keys().public_hex(),
            records: hits.len() as u64,
            by_kind,
            files: vec![FileEntry {
                name: name.into(),
                sha256: hex::encode(w.hasher.finalize()),
                bytes: w.bytes,
                records: hits.len() as u64,
            }],
            chain: ChainPosition {
                head_batch: head.map(|h| h.0),
                head_hash: head.map(|h| hex::encode(h.1)),
                first_record_no: hits.iter().map(|h| h.record_no).min(),
                last_record_no: hits.iter().map(|h| h.record_no).max(),
                batches,
            },
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|source| Error::Encode {
            what: "manifest",
            source,
        })?;
        fsutil::write_atomic(&out.join(MANIFEST), &json)?;
        fsutil::write_atomic(
            &out.join(MANIFEST_SIG),
            format!("{}\n", self.keys().sign_hex(&json)).as_bytes(),
        )?;
        fsutil::write_atomic(
            &out.join(signing::PUBLIC_FILE),
            format!("{}\n", self.keys().public_hex()).as_bytes(),
        )?;
        Ok(manifest)
    }
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

const CSV_HEADER: &str =
    "record_no,batch,event_time,receive_time,kind,school,source,user,ip,mac,port,detail\n";

fn csv_line(h: &Hit) -> String {
    let r = &h.record;
    let mut users = Vec::new();
    let mut ips = Vec::new();
    let mut macs = Vec::new();
    let mut ports = Vec::new();
    r.for_each_term(|t| match t {
        Term::User(u) => users.push(u.to_string()),
        Term::Ip(i) => ips.push(i.to_string()),
        Term::Mac(m) => macs.push(m.to_string()),
        Term::Port(p) => ports.push(p.to_string()),
        Term::Endpoint(..) | Term::Assigned(_) => {}
    });
    let detail = match &r.body {
        // One record per line: line breaks inside raw data are escaped (JSON Lines keeps the bytes).
        Body::Raw(raw) => String::from_utf8_lossy(&raw.data)
            .replace('\r', "\\r")
            .replace('\n', "\\n"),
        body => serde_json::to_string(body).unwrap_or_default(),
    };
    let fields = [
        h.record_no.to_string(),
        h.batch.to_string(),
        shown(r.event_time),
        shown(r.receive_time),
        r.kind().into(),
        r.school.clone().unwrap_or_default(),
        r.source(),
        users.join(" "),
        ips.join(" "),
        macs.join(" "),
        ports.join(" "),
        detail,
    ];
    let mut line = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The outcome of [`verify_export`].
#[derive(Debug, Clone, Serialize)]
pub struct ExportCheck {
    pub ok: bool,
    pub records: u64,
    pub query: String,
    pub actor: String,
    pub created: Timestamp,
    /// The key the manifest was checked with, and whether the caller supplied it.
    pub public_key: String,
    pub key_supplied: bool,
    pub problems: Vec<String>,
}

/// Checks an export directory without the store: the manifest's signature, then every file's
/// size, SHA-256 and record count.
///
/// # Errors
/// When the manifest is missing or unreadable.
pub fn verify_export(dir: &Path, key: Option<VerifyingKey>) -> Result<ExportCheck> {
    let mpath = dir.join(MANIFEST);
    let bytes = std::fs::read(&mpath).map_err(|e| Error::io(&mpath, e))?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Export {
        path: mpath.clone(),
        reason: format!("manifest.json does not parse ({e}); it was altered"),
    })?;
    let mut problems = Vec::new();
    let key_supplied = key.is_some();
    let key = match key {
        Some(k) => k,
        None => {
            signing::parse_public(&manifest.store_public_key).map_err(|reason| Error::Export {
                path: mpath.clone(),
                reason,
            })?
        }
    };
    let sig_path: PathBuf = dir.join(MANIFEST_SIG);
    let sig = std::fs::read_to_string(&sig_path).unwrap_or_default();
    if !signing::verify_hex(&key, &bytes, sig.trim()) {
        problems.push(
            "manifest.json is not signed by the store key (the manifest or its signature was altered)"
                .to_string(),
        );
    }
    for f in &manifest.files {
        let p = dir.join(&f.name);
        let Ok(content) = std::fs::read(&p) else {
            problems.push(format!("{} is missing", f.name));
            continue;
        };
        if content.len() as u64 != f.bytes {
            problems.push(format!(
                "{} has {} bytes, the manifest says {} (truncated or extended)",
                f.name,
                content.len(),
                f.bytes
            ));
        }
        if hex::encode(Sha256::digest(&content)) != f.sha256 {
            problems.push(format!(
                "{} does not match its SHA-256 in the manifest (altered)",
                f.name
            ));
        }
        let lines = content.iter().filter(|b| **b == b'\n').count() as u64;
        let records = if f.name.ends_with(".csv") {
            lines.saturating_sub(1)
        } else {
            lines
        };
        if records != f.records {
            problems.push(format!(
                "{} holds {records} records, the manifest says {}",
                f.name, f.records
            ));
        }
    }
    Ok(ExportCheck {
        ok: problems.is_empty(),
        records: manifest.records,
        query: manifest.query,
        actor: manifest.actor,
        created: manifest.created,
        public_key: hex::encode(key.to_bytes()),
        key_supplied,
        problems,
    })
}
