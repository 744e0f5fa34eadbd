//! Importing an old log server's files: each line parsed like live syslog input and stored,
//! marked as imported with the file's SHA-256.
//!
//! A line's receive time is its own timestamp (the time the old server received it, as near as
//! the file tells), so retention counts from when the data first entered a system. RFC 3164
//! lines carry no year: it is the one nearest the file's modification time, which is also the
//! time of lines that carry no timestamp at all.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use jiff::Timestamp;
use khetnet_retention::Store;
use khetnet_retention::record::{Body, Input, Origin};
use sha2::{Digest, Sha256};

use crate::{Error, Receipt, Result, syslog};

/// Records stored per append.
const BATCH: usize = 4096;

/// What one file gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Lines read (empty lines are not counted or stored).
    pub lines: u64,
    /// Lines a gateway parser understood.
    pub parsed: u64,
    /// Lines kept raw.
    pub raw: u64,
    /// Bytes read from the file as it is on disk (compressed, for .gz).
    pub bytes: u64,
    /// The SHA-256 of the file as it is on disk, hex.
    pub sha256: String,
}

/// The SHA-256 of a file's bytes, hex.
///
/// # Errors
/// [`Error::Read`] when the file cannot be read.
pub fn sha256_file(path: &Path) -> Result<String> {
    let read_error = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(read_error)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(read_error)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Imports one file, plain or gzip-compressed (recognised by its magic bytes, not its name),
/// into `store`. `progress` is called after every stored batch.
///
/// # Errors
/// [`Error::Read`] when the file cannot be read or decompressed; [`Error::Store`] when the store
/// refuses a batch (the batches before it are stored).
pub fn import_file(
    store: &Store,
    path: &Path,
    mut progress: impl FnMut(&ImportStats),
) -> Result<ImportStats> {
    let read_error = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let sha256 = sha256_file(path)?;
    let file = File::open(path).map_err(read_error)?;
    let modified = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| Timestamp::try_from(t).ok())
        .unwrap_or_else(|| store.now());
    let mut plain = BufReader::with_capacity(256 * 1024, file);
    let gzip = plain
        .fill_buf()
        .map_err(read_error)?
        .starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn BufRead> = if gzip {
        Box::new(BufReader::with_capacity(
            256 * 1024,
            flate2::bufread::MultiGzDecoder::new(plain),
        ))
    } else {
        Box::new(plain)
    };
    let receipt = Receipt {
        receive_time: modified,
        origin: Origin {
            input: Input::Import,
            peer: None,
            import_sha256: Some(sha256.clone()),
        },
        school: None,
    };
    let mut stats = ImportStats {
        sha256,
        bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        ..ImportStats::default()
    };
    let mut line = Vec::new();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(read_error)?;
        if n == 0 {
            break;
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if line.is_empty() {
            continue;
        }
        let mut record = syslog::decode(&line, &receipt);
        record.receive_time = record.event_time;
        stats.lines += 1;
        if matches!(record.body, Body::Raw(_)) {
            stats.raw += 1;
        } else {
            stats.parsed += 1;
        }
        batch.push(record);
        if batch.len() == BATCH {
            store.append(std::mem::take(&mut batch))?;
            progress(&stats);
        }
    }
    if !batch.is_empty() {
        store.append(batch)?;
    }
    progress(&stats);
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use khetnet_retention::Options;
    use std::io::Write;

    fn records(store: &Store) -> Vec<khetnet_retention::Record> {
        let view = store.view().unwrap();
        let q = khetnet_retention::query::Query::between(
            "2000-01-01T00:00:00Z".parse().unwrap(),
            "2100-01-01T00:00:00Z".parse().unwrap(),
        );
        let (hits, _) = khetnet_retention::query::search(&view, &q).unwrap();
        hits.into_iter().map(|h| h.record).collect()
    }

    #[test]
    fn plain_and_gzip_files_are_imported_with_their_hash_and_own_times() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path().join("store"), &Options::default()).unwrap();
        let text = "<30>1 2026-11-20T10:59:59+07:00 dhcp dhcpd 812 - - DHCPACK on 10.0.0.5 to aa:bb:cc:dd:ee:ff (pc) via eth1\r\n\n<13>1 2026-11-20T11:00:00+07:00 host sshd 1 - - Accepted password for root\n";
        let plain = dir.path().join("messages");
        std::fs::write(&plain, text).unwrap();
        let gz = dir.path().join("messages.1.gz");
        let mut enc = flate2::write::GzEncoder::new(
            File::create(&gz).unwrap(),
            flate2::Compression::default(),
        );
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap();

        let a = import_file(&store, &plain, |_| {}).unwrap();
        let b = import_file(&store, &gz, |_| {}).unwrap();
        assert_eq!((a.lines, a.parsed, a.raw), (2, 1, 1));
        assert_eq!((b.lines, b.parsed, b.raw), (2, 1, 1));
        assert_eq!(a.sha256, hex::encode(Sha256::digest(text.as_bytes())));
        assert_eq!(
            b.sha256,
            hex::encode(Sha256::digest(std::fs::read(&gz).unwrap()))
        );

        let stored = records(&store);
        assert_eq!(stored.len(), 4);
        for r in &stored {
            assert_eq!(r.origin.input, Input::Import);
            assert!(
                r.origin.import_sha256 == Some(a.sha256.clone())
                    || r.origin.import_sha256 == Some(b.sha256.clone())
            );
            assert_eq!(
                r.receive_time, r.event_time,
                "receive time is the line's own"
            );
            assert!(
                r.event_time.to_string().starts_with("2026-11-20T0"),
                "{}",
                r.event_time
            );
        }
        let lease = stored
            .iter()
            .filter(|r| matches!(r.body, Body::Lease(_)))
            .count();
        assert_eq!(lease, 2);
    }

    #[test]
    fn a_missing_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path().join("store"), &Options::default()).unwrap();
        let err = import_file(&store, &dir.path().join("nope.log"), |_| {}).unwrap_err();
        assert!(err.to_string().contains("nope.log"), "{err}");
    }
}
