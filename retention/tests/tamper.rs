//! Tampering with a store is detected by `verify` and located: each case alters a copy of a
//! signed store with three segments and a live tail the way an administrator could.

use std::path::{Path, PathBuf};
use std::process::Command;

use jiff::{SignedDuration, Timestamp};
use khetnet_retention::testing::{ManualClock, flow};
use khetnet_retention::verify::{ProblemKind, VerifyOptions, verify};
use khetnet_retention::{Options, Store};

fn fixture() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let clock = ManualClock::new("2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap());
    let opts = Options {
        clock: clock.clock(),
        ..Options::default()
    };
    let store = Store::init(&dir, &opts).unwrap();
    let mut n = 0;
    for _segment in 0..3 {
        for _batch in 0..4 {
            store.append((n..n + 50).map(flow).collect()).unwrap();
            n += 50;
            clock.advance(SignedDuration::from_secs(1));
        }
        store.seal_now().unwrap();
    }
    for _ in 0..3 {
        store.append((n..n + 50).map(flow).collect()).unwrap();
        n += 50;
    }
    store.sign_now().unwrap();
    store.append((n..n + 50).map(flow).collect()).unwrap();
    (tmp, dir)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn writable(p: &Path) {
    let mut perm = std::fs::metadata(p).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(p, perm).unwrap();
}

fn flip(p: &Path, at: usize) {
    writable(p);
    let mut b = std::fs::read(p).unwrap();
    b[at] ^= 0x20;
    std::fs::write(p, b).unwrap();
}

/// Applies `tamper` to a fresh fixture and checks verify names `kind` at a place or detail
/// containing `needle` (computed from the fixture).
fn check(tamper: impl Fn(&Path) -> String, kind: ProblemKind) {
    let (_tmp, dir) = fixture();
    let needle = tamper(&dir);
    let report = verify(&dir, &VerifyOptions::default()).unwrap();
    assert!(!report.intact, "tampering went unnoticed");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == kind && (p.place.contains(&needle) || p.detail.contains(&needle))),
        "expected {kind:?} mentioning {needle:?}, got {:#?}",
        report.problems
    );
}

#[test]
fn an_untouched_store_verifies_intact() {
    let (_tmp, dir) = fixture();
    let report = verify(&dir, &VerifyOptions::default()).unwrap();
    assert!(report.intact, "{:#?}", report.problems);
    assert_eq!(report.segments, 3);
    assert_eq!(report.records, 800);
    assert_eq!(report.unsigned_batches, 1);
}

#[test]
fn a_flipped_byte_in_a_segment_is_named() {
    check(
        |dir| {
            let seg = &segments(dir)[1];
            flip(seg, 200);
            name(seg)
        },
        ProblemKind::Altered,
    );
}

#[test]
fn a_column_edited_inside_a_sealed_block_is_named() {
    // An administrator who knows the format decompresses a block, changes one value inside a
    // column of a batch, and compresses the block back to the same length (padded with a zstd
    // skippable frame), so that the file still parses and the footer still fits.
    check(
        |dir| {
            let seg = &segments(dir)[1];
            let index = khetnet_retention::segment::read_index(seg).unwrap();
            let block = &index.blocks[0];
            let (at, len) = (block.offset as usize, block.len as usize);
            writable(seg);
            let mut bytes = std::fs::read(seg).unwrap();
            let plain = zstd::bulk::decompress(&bytes[at + 4..at + len], 1 << 24).unwrap();
            // Inside the first frame's body, past its header: a byte of a column (the first
            // whose change still compresses into the block's length).
            let body_len = u32::from_le_bytes(plain[4..8].try_into().unwrap()) as usize;
            let mut packed = (1..body_len - 41)
                .map(|back| {
                    let mut edited = plain.clone();
                    edited[8 + body_len - back] ^= 0x01;
                    zstd::bulk::compress(&edited, 19).unwrap()
                })
                .find(|p| p.len() + 8 <= len - 4)
                .expect("an edit that fits");
            let pad = len - 4 - packed.len();
            packed.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
            packed.extend_from_slice(&((pad - 8) as u32).to_le_bytes());
            packed.resize(len - 4, 0);
            bytes[at + 4..at + len].copy_from_slice(&packed);
            std::fs::write(seg, bytes).unwrap();
            format!(
                "(batches {}..={}): content does not match its SHA-256",
                block.first_seq, block.last_seq
            )
        },
        ProblemKind::Altered,
    );
}

/// Where a segment's footer (JSON) starts.
fn footer_start(bytes: &[u8]) -> usize {
    let n = bytes.len();
    let len = u64::from_le_bytes(bytes[n - 16..n - 8].try_into().unwrap()) as usize;
    n - 16 - len
}

#[test]
fn an_edited_segment_index_is_named() {
    // A bit set in a Bloom filter, and a footer claiming fewer records.
    check(
        |dir| {
            let seg = &segments(dir)[0];
            let at = footer_start(&std::fs::read(seg).unwrap()) - 1;
            flip(seg, at);
            name(seg)
        },
        ProblemKind::Altered,
    );
    check(
        |dir| {
            let seg = &segments(dir)[0];
            let bytes = std::fs::read(seg).unwrap();
            let at = footer_start(&bytes);
            let footer = String::from_utf8(bytes[at..bytes.len() - 16].to_vec()).unwrap();
            let edited = footer.replacen("\"records\":200", "\"records\":199", 1);
            assert_ne!(footer, edited);
            let mut out = bytes[..at].to_vec();
            out.extend_from_slice(edited.as_bytes());
            out.extend_from_slice(&(edited.len() as u64).to_le_bytes());
            out.extend_from_slice(b"KNSEGEND");
            writable(seg);
            std::fs::write(seg, out).unwrap();
            name(seg)
        },
        ProblemKind::Altered,
    );
}

#[test]
fn a_segment_renamed_to_hide_its_event_times_is_named() {
    check(
        |dir| {
            let seg = &segments(dir)[1];
            let n = name(seg);
            // seg-<first>-<last>_<min>_<max>.knseg -> a range an hour after the real one.
            let (head, times) = n.strip_suffix(".knseg").unwrap().split_once('_').unwrap();
            let (min, max) = times.split_once('_').unwrap();
            let hour = 3600;
            let renamed = format!(
                "{head}_{}_{}.knseg",
                min.parse::<i64>().unwrap() + hour,
                max.parse::<i64>().unwrap() + hour
            );
            std::fs::rename(seg, seg.with_file_name(&renamed)).unwrap();
            renamed
        },
        ProblemKind::Altered,
    );
}

#[test]
fn a_deleted_segment_is_named_by_its_batches() {
    check(
        |dir| {
            let seg = &segments(dir)[1];
            let n = name(seg);
            std::fs::remove_file(seg).unwrap();
            // seg-<first>-<last>_<times>.knseg: the detail names "first..=last" without leading
            // zeros.
            let (a, b) = n["seg-".len()..n.len() - ".knseg".len()]
                .split_once('_')
                .unwrap()
                .0
                .split_once('-')
                .unwrap();
            format!(
                "{}..={}",
                a.parse::<u64>().unwrap(),
                b.parse::<u64>().unwrap()
            )
        },
        ProblemKind::Missing,
    );
}

#[test]
fn two_swapped_segments_are_named() {
    check(
        |dir| {
            let s = segments(dir);
            let tmp = dir.join("swap");
            std::fs::rename(&s[0], &tmp).unwrap();
            std::fs::rename(&s[1], &s[0]).unwrap();
            std::fs::rename(&tmp, &s[1]).unwrap();
            name(&s[0])
        },
        ProblemKind::Reordered,
    );
}

#[test]
fn a_tail_cut_inside_a_batch_is_named() {
    check(
        |dir| {
            let live = dir.join("live.log");
            let len = std::fs::metadata(&live).unwrap().len();
            let f = std::fs::OpenOptions::new().write(true).open(&live).unwrap();
            f.set_len(len - 10).unwrap();
            "live.log".into()
        },
        ProblemKind::Truncated,
    );
}

#[test]
fn a_tail_cut_at_a_batch_boundary_is_caught_by_the_signed_head() {
    check(
        |dir| {
            std::fs::write(dir.join("live.log"), b"").unwrap();
            "head.json".into()
        },
        ProblemKind::Truncated,
    );
}

#[test]
fn a_flipped_byte_in_the_live_tail_is_located() {
    check(
        |dir| {
            flip(&dir.join("live.log"), 100);
            "live.log byte 0".into()
        },
        ProblemKind::Altered,
    );
}

#[test]
fn a_rewritten_and_rehashed_live_batch_breaks_the_chain_at_the_next_batch() {
    check(
        |dir| {
            let live = dir.join("live.log");
            let bytes = std::fs::read(&live).unwrap();
            // Re-encode the first live batch with one record changed and a correct hash, as an
            // administrator who knows the format would.
            let scan = khetnet_retention::store::scan_live(&bytes);
            let first = &scan.batches[0];
            let mut batch = first.batch.clone();
            if let khetnet_retention::batch::Content::Records { records } = &mut batch.content {
                records[0].school = Some("S999".into());
            }
            let (frame, _) = khetnet_retention::batch::encode(&batch).unwrap();
            let mut out = frame;
            out.extend_from_slice(&bytes[first.len as usize..]);
            std::fs::write(&live, out).unwrap();
            format!("batch {}", scan.batches[1].batch.seq)
        },
        ProblemKind::Altered,
    );
}

#[test]
fn the_cli_exits_zero_only_when_intact() {
    let bin = env!("CARGO_BIN_EXE_khetnet-retention");
    let (_tmp, dir) = fixture();
    let run = || {
        Command::new(bin)
            .args(["--store", dir.to_str().unwrap(), "verify", "--json"])
            .output()
            .unwrap()
    };
    let ok = run();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(report["intact"], true);
    flip(&segments(&dir)[2], 300);
    let bad = run();
    assert_eq!(bad.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert_eq!(report["intact"], false);
}
