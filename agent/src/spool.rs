//! The offline spool: report batches on disk until the server acknowledges them.
//!
//! On-disk invariants (folder `spool/` of the state directory):
//! - One file per batch, named by a 20-digit sequence number (`00000000000000000042.json`),
//!   holding the [`Report`] exactly as it will be sent; its batch id is fixed when it is
//!   written, so every retry, across restarts, is recognisably the same batch.
//! - A batch file is written to `*.tmp`, synced, renamed and the folder synced before
//!   [`Spool::push`] returns: a batch is either whole on disk or absent.
//! - Batches are sent oldest first; a batch leaves the folder only when the server
//!   acknowledged it (or refused it for good: it then moves to `rejected/`, at most 100 kept).
//! - At most `max_batches` batches are kept. Past that the oldest is dropped, and its samples
//!   (plus any loss it was carrying) are added to the count in `lost`, which is written before
//!   the batch is deleted. The next batch written carries that count as `samples_lost` and
//!   resets it, so a loss is reported at least once and never silently forgotten.

use std::path::{Path, PathBuf};

use crate::client::Report;
use crate::probe::Sample;
use crate::state::{sync_dir, write_atomic};
use crate::{Error, Result};

const REJECTED_KEPT: usize = 100;

pub struct Spool {
    dir: PathBuf,
    max_batches: usize,
    /// Sequence numbers on disk, oldest first.
    batches: std::collections::VecDeque<u64>,
    next_seq: u64,
    /// Samples dropped and not yet carried by a written batch.
    lost: i64,
    /// Samples dropped since this process started (for its statistics).
    pub dropped_total: u64,
}

impl Spool {
    /// Opens (creating) the spool in `dir`, removing half-written files.
    pub fn open(dir: &Path, max_batches: usize) -> Result<Spool> {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let mut seqs = Vec::new();
        for entry in
            std::fs::read_dir(dir).map_err(Error::io(format!("reading {}", dir.display())))?
        {
            let entry = entry.map_err(Error::io(format!("reading {}", dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            } else if let Some(seq) = name
                .strip_suffix(".json")
                .and_then(|s| s.parse::<u64>().ok())
            {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let lost = std::fs::read_to_string(dir.join("lost"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        Ok(Spool {
            dir: dir.to_owned(),
            max_batches: max_batches.max(1),
            next_seq: seqs.last().map_or(1, |s| s + 1),
            batches: seqs.into(),
            lost,
            dropped_total: 0,
        })
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.json"))
    }

    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Samples dropped and not yet reported.
    pub fn lost(&self) -> i64 {
        self.lost
    }

    fn set_lost(&mut self, lost: i64) -> Result<()> {
        write_atomic(&self.dir.join("lost"), lost.to_string().as_bytes(), 0o644)?;
        self.lost = lost;
        Ok(())
    }

    /// Writes a new batch of `samples` durably (with any loss to report, and the devices their
    /// discovery sweeps found), then drops the oldest batches past the bound. Does nothing when
    /// there is neither sample nor loss.
    pub fn push(&mut self, mut samples: Vec<Sample>) -> Result<()> {
        if samples.is_empty() && self.lost == 0 {
            return Ok(());
        }
        let discovered = samples
            .iter_mut()
            .flat_map(|s| std::mem::take(&mut s.discovered))
            .collect();
        let report = Report {
            batch_id: new_batch_id(),
            agent_version: crate::VERSION.into(),
            samples_lost: self.lost,
            samples,
            discovered,
        };
        let seq = self.next_seq;
        let bytes = serde_json::to_vec(&report).expect("a report serializes");
        write_atomic(&self.path(seq), &bytes, 0o644)?;
        self.next_seq += 1;
        self.batches.push_back(seq);
        if self.lost != 0 {
            self.set_lost(0)?;
        }
        while self.batches.len() > self.max_batches {
            self.drop_oldest()?;
        }
        Ok(())
    }

    fn drop_oldest(&mut self) -> Result<()> {
        let Some(seq) = self.batches.front().copied() else {
            return Ok(());
        };
        let path = self.path(seq);
        let report: Option<Report> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let (samples, carried) =
            report.map_or((0, 0), |r| (r.samples.len() as i64, r.samples_lost));
        self.set_lost(self.lost + samples + carried)?;
        std::fs::remove_file(&path).map_err(Error::io(format!("removing {}", path.display())))?;
        self.batches.pop_front();
        self.dropped_total += samples as u64;
        tracing::warn!(
            samples,
            spool_max_batches = self.max_batches,
            "spool full: dropped the oldest batch"
        );
        Ok(())
    }

    /// The oldest batch: its sequence number and the bytes to send.
    pub fn oldest(&self) -> Result<Option<(u64, Vec<u8>)>> {
        let Some(&seq) = self.batches.front() else {
            return Ok(None);
        };
        let path = self.path(seq);
        let bytes =
            std::fs::read(&path).map_err(Error::io(format!("reading {}", path.display())))?;
        Ok(Some((seq, bytes)))
    }

    /// The server acknowledged `seq`: remove it.
    pub fn ack(&mut self, seq: u64) -> Result<()> {
        if self.batches.front() == Some(&seq) {
            let path = self.path(seq);
            std::fs::remove_file(&path)
                .map_err(Error::io(format!("removing {}", path.display())))?;
            sync_dir(&self.dir)?;
            self.batches.pop_front();
        }
        Ok(())
    }

    /// The server refused `seq` for good: move it to `rejected/` for the operator.
    pub fn reject(&mut self, seq: u64) -> Result<()> {
        if self.batches.front() != Some(&seq) {
            return Ok(());
        }
        let rejected = self.dir.join("rejected");
        std::fs::create_dir_all(&rejected)
            .map_err(Error::io(format!("creating {}", rejected.display())))?;
        let to = rejected.join(format!("{seq:020}.json"));
        std::fs::rename(self.path(seq), &to)
            .map_err(Error::io(format!("moving to {}", to.display())))?;
        sync_dir(&self.dir)?;
        self.batches.pop_front();
        let mut kept: Vec<_> = std::fs::read_dir(&rejected)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        kept.sort();
        let excess = kept.len().saturating_sub(REJECTED_KEPT);
        for old in &kept[..excess] {
            let _ = std::fs::remove_file(old);
        }
        Ok(())
    }
}

/// A random (version 4) UUID in its text form.
pub fn new_batch_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(n: usize, first: i64) -> Vec<Sample> {
        (0..n)
            .map(|i| Sample {
                device_id: first + i as i64,
                at: "2026-11-21T10:00:00Z".into(),
                ok: true,
                latency_ms: Some(1.0),
                loss_percent: Some(0.0),
                error: None,
                detail: None,
                discovered: Vec::new(),
            })
            .collect()
    }

    fn read(spool: &Spool) -> Report {
        serde_json::from_slice(&spool.oldest().unwrap().unwrap().1).unwrap()
    }

    #[test]
    fn batch_ids_are_uuid_v4() {
        let id = new_batch_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, new_batch_id());
    }

    #[test]
    fn replays_in_order_across_reopen_with_the_same_batch_ids() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 10).unwrap();
        spool.push(samples(2, 1)).unwrap();
        spool.push(samples(3, 10)).unwrap();
        spool.push(Vec::new()).unwrap();
        assert_eq!(spool.len(), 2, "an empty batch without loss is not written");
        let first = read(&spool);
        std::fs::write(dir.path().join("00000000000000000099.tmp"), b"half").unwrap();
        drop(spool);

        let mut spool = Spool::open(dir.path(), 10).unwrap();
        assert_eq!(spool.len(), 2);
        assert!(!dir.path().join("00000000000000000099.tmp").exists());
        assert_eq!(read(&spool), first, "same batch, same id after a restart");
        let (seq, _) = spool.oldest().unwrap().unwrap();
        spool.ack(seq).unwrap();
        assert_eq!(read(&spool).samples[0].device_id, 10);
        spool.push(samples(1, 20)).unwrap();
        let (seq, _) = spool.oldest().unwrap().unwrap();
        spool.ack(seq).unwrap();
        assert_eq!(
            read(&spool).samples[0].device_id,
            20,
            "new batches after old ones"
        );
    }

    /// Against a model: whatever is pushed is either still spooled, acknowledged, or counted
    /// as lost; and the loss count reaches the server exactly through `samples_lost`.
    #[test]
    fn every_sample_is_delivered_or_counted_lost() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 3).unwrap();
        let mut rng_state = 12345u64;
        let mut next = || {
            rng_state = rng_state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng_state >> 33) as usize
        };
        let (mut pushed, mut delivered, mut reported_lost) = (0i64, 0i64, 0i64);
        for step in 0..500 {
            match next() % 4 {
                0 | 1 => {
                    let n = next() % 5;
                    pushed += n as i64;
                    spool.push(samples(n, 0)).unwrap();
                }
                2 => {
                    if let Some((seq, bytes)) = spool.oldest().unwrap() {
                        let r: Report = serde_json::from_slice(&bytes).unwrap();
                        delivered += r.samples.len() as i64;
                        reported_lost += r.samples_lost;
                        spool.ack(seq).unwrap();
                    }
                }
                _ => {
                    if step % 7 == 0 {
                        spool = Spool::open(dir.path(), 3).unwrap();
                    }
                }
            }
            assert!(spool.len() <= 3);
            let spooled: i64 = {
                let mut total = 0;
                for seq in spool.batches.iter() {
                    let r: Report =
                        serde_json::from_slice(&std::fs::read(spool.path(*seq)).unwrap()).unwrap();
                    total += r.samples.len() as i64 + r.samples_lost;
                }
                total
            };
            // Each sample is in exactly one place: delivered, reported lost, in a spooled
            // batch (as a sample or in the loss it carries), or in the pending loss count.
            assert_eq!(
                pushed,
                delivered + reported_lost + spooled + spool.lost(),
                "step {step}"
            );
        }
        // Drain: every pushed sample was delivered or reported lost.
        spool.push(Vec::new()).unwrap();
        while let Some((seq, bytes)) = spool.oldest().unwrap() {
            let r: Report = serde_json::from_slice(&bytes).unwrap();
            delivered += r.samples.len() as i64;
            reported_lost += r.samples_lost;
            spool.ack(seq).unwrap();
        }
        assert_eq!(spool.lost(), 0);
        assert_eq!(pushed, delivered + reported_lost);
        assert!(reported_lost > 0, "the bound was hit in this run");
    }

    #[test]
    fn rejected_batches_are_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 10).unwrap();
        spool.push(samples(1, 1)).unwrap();
        let (seq, _) = spool.oldest().unwrap().unwrap();
        spool.reject(seq).unwrap();
        assert!(spool.is_empty());
        assert!(
            dir.path()
                .join("rejected")
                .join(format!("{seq:020}.json"))
                .exists()
        );
    }
}
