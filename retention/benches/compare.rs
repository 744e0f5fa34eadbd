//! The retention store against what Thai log servers do today (text lines, `gzip -9`, `zgrep`),
//! measured in the same run, reported as ratios:
//!
//! - sustained durable append (records/s, every batch fsynced);
//! - on-disk bytes per traffic record vs the same records as `gzip -9` text lines;
//! - `attribute` for one public IP:port at one time vs `zgrep` over the gzip files, at each of
//!   several sizes of the same store (checkpoints), to show that its cost stays flat.
//!
//! `BENCH_RECORDS` (default 1,000,000) NAT'd flows at 400 records/s (a large district's rate:
//! 100 million is about 3 days), from 5,000 hosts behind 8 public addresses, whose RADIUS
//! sessions are refreshed (interim) every 6 hours. `BENCH_CHECKPOINTS` (comma-separated record
//! counts; default 1, 10 and 100 million up to `BENCH_RECORDS`, and `BENCH_RECORDS`) are where
//! the run stops to attribute and zgrep. Records are generated as they are appended and the text
//! lines streamed through a pipe into `gzip -9` (one file per stretch between checkpoints, as a
//! log server rotates them), so memory stays bounded whatever the size. Run:
//! `BENCH_DIR=/tmp BENCH_RECORDS=10000000 cargo bench -p khetnet-retention --bench compare`.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use khetnet_retention::record::{Body, Flow, Input, Origin, Record, Session, SessionStatus};
use khetnet_retention::store::shown;
use khetnet_retention::{Options, Store};

#[derive(Clone)]
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn host(h: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        10,
        (h / 65536) as u8 + 1,
        (h / 256 % 256) as u8,
        (h % 256) as u8,
    ))
}

fn flow(rng: &mut Lcg, at: Timestamp) -> Record {
    let h = rng.next() % 5000;
    let public = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1 + (h % 8) as u8));
    let dst = IpAddr::V4(Ipv4Addr::new(
        (1 + rng.next() % 220) as u8,
        (rng.next() % 256) as u8,
        (rng.next() % 256) as u8,
        (1 + rng.next() % 254) as u8,
    ));
    let dst_port = [443, 443, 443, 80, 53, 123, 8080][(rng.next() % 7) as usize];
    Record {
        event_time: at,
        receive_time: at + SignedDuration::from_millis(3),
        origin: Origin {
            input: Input::Netflow,
            peer: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1 + (h % 200) as u8))),
            import_sha256: None,
        },
        school: Some(format!("S{:03}", h % 200)),
        body: Body::Flow(Flow {
            protocol: if dst_port == 53 || dst_port == 123 {
                17
            } else {
                6
            },
            src_ip: host(h),
            src_port: Some(32768 + (rng.next() % 28000) as u16),
            dst_ip: dst,
            dst_port: Some(dst_port),
            bytes: Some(rng.next() % 2_000_000),
            packets: Some(1 + rng.next() % 2000),
            start: Some(at - SignedDuration::from_secs((rng.next() % 120) as i64)),
            end: Some(at),
            exporter: None,
            nat_src_ip: Some(public),
            nat_src_port: Some(1024 + (rng.next() % 64000) as u16),
            action: None,
            user: None,
        }),
    }
}

/// The same facts as a firewall/NetFlow text line, as log servers keep them.
fn line(r: &Record) -> String {
    let Body::Flow(f) = &r.body else {
        unreachable!()
    };
    format!(
        "{} {} {} netflow: proto {} {}:{}->{}:{} NAT {}:{} bytes {} packets {} start {}\n",
        shown(r.event_time),
        r.origin.peer.unwrap(),
        r.school.as_deref().unwrap_or("-"),
        f.protocol,
        f.src_ip,
        f.src_port.unwrap(),
        f.dst_ip,
        f.dst_port.unwrap(),
        f.nat_src_ip.unwrap(),
        f.nat_src_port.unwrap(),
        f.bytes.unwrap(),
        f.packets.unwrap(),
        shown(f.start.unwrap()),
    )
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        n += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    n
}

/// Records between two session refreshes: 6 hours at 400 records/s.
const SESSION_EVERY: u64 = 6 * 3600 * 400;
const BATCH: u64 = 2_000;

fn start() -> Timestamp {
    "2026-03-10T00:00:00Z".parse().unwrap()
}

/// Flow number `i` of the run; `rng` carries the stream from one flow to the next.
fn flow_no(rng: &mut Lcg, i: u64) -> Record {
    flow(
        rng,
        start() + SignedDuration::from_micros((i * 2500) as i64),
    )
}

/// The RADIUS record of every host's session (a Start at first, Interim afterwards), so that
/// attribution ends at a person whatever the time.
fn sessions(at: Timestamp, first: bool) -> Vec<Record> {
    (0..5000u64)
        .map(|h| Record {
            event_time: at,
            receive_time: at,
            origin: Origin {
                input: Input::Radius,
                peer: None,
                import_sha256: None,
            },
            school: Some(format!("S{:03}", h % 200)),
            body: Body::Session(Session {
                status: if first {
                    SessionStatus::Start
                } else {
                    SessionStatus::Interim
                },
                user: format!("user{h:05}"),
                session_id: Some(format!("s{h}")),
                ip: Some(host(h)),
                mac: Some(format!(
                    "02:00:00:{:02x}:{:02x}:{:02x}",
                    h / 65536,
                    h / 256 % 256,
                    h % 256
                )),
                nas: None,
                input_octets: None,
                output_octets: None,
                duration_secs: None,
                terminate_cause: None,
            }),
        })
        .collect()
}

/// `gzip -9` reading text lines from a pipe into `path`.
fn gzip_into(path: &Path) -> Child {
    Command::new("gzip")
        .arg("-9")
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(path).unwrap())
        .spawn()
        .unwrap()
}

/// What one checkpoint measured.
struct Point {
    records: u64,
    segments: usize,
    opened: u64,
    read: u64,
    blocks: u64,
    attribute_secs: f64,
    zgrep_secs: f64,
    zgrep_lines: usize,
    summary: String,
}

fn main() {
    let n: u64 = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mut checkpoints: Vec<u64> = match std::env::var("BENCH_CHECKPOINTS") {
        Ok(s) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => [1_000_000, 10_000_000, 100_000_000].into(),
    };
    checkpoints.retain(|c| *c > 0 && *c < n);
    checkpoints.push(n);
    checkpoints.sort_unstable();
    checkpoints.dedup();
    let tmp =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let start = start();

    let dir = tmp.path().join("store");
    let store = Store::init(&dir, &Options::default()).unwrap();
    store
        .append(sessions(start - SignedDuration::from_mins(30), true))
        .unwrap();

    let mut rng = Lcg(42);
    let mut i = 0u64;
    let (mut append_secs, mut text_secs, mut text_bytes) = (0.0, 0.0, 0u64);
    let mut gz_files: Vec<PathBuf> = Vec::new();
    let mut points = Vec::new();
    let mut probe_at = None;
    for (k, &checkpoint) in checkpoints.iter().enumerate() {
        // The probe: a translation half a million records before the checkpoint (the middle
        // of the last million), so that every checkpoint asks the same kind of question.
        let probe_no = checkpoint.saturating_sub(500_000).max(checkpoint / 2);
        let stretch_start = i;
        let stretch_rng = rng.clone();
        // The store: appends timed, generation not.
        while i < checkpoint {
            let len = BATCH.min(checkpoint - i);
            let mut rs = Vec::with_capacity(len as usize);
            for j in i..i + len {
                if j > 0 && j % SESSION_EVERY == 0 {
                    let at = start + SignedDuration::from_micros((j * 2500) as i64);
                    let t = Instant::now();
                    store.append(sessions(at, false)).unwrap();
                    append_secs += t.elapsed().as_secs_f64();
                }
                let r = flow_no(&mut rng, j);
                if j == probe_no
                    && let Body::Flow(f) = &r.body
                {
                    probe_at = Some((f.nat_src_ip.unwrap(), f.nat_src_port.unwrap(), r.event_time));
                }
                rs.push(r);
            }
            let t = Instant::now();
            store.append(rs).unwrap();
            append_secs += t.elapsed().as_secs_f64();
            i += len;
        }
        // The peer: the same records again, as text lines piped into gzip -9.
        let t = Instant::now();
        let gz = tmp.path().join(format!("flows.{k}.log.gz"));
        let mut gzip = gzip_into(&gz);
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, gzip.stdin.take().unwrap());
            let mut rng = stretch_rng;
            for j in stretch_start..checkpoint {
                let l = line(&flow_no(&mut rng, j));
                text_bytes += l.len() as u64;
                w.write_all(l.as_bytes()).unwrap();
            }
        }
        assert!(gzip.wait().unwrap().success());
        text_secs += t.elapsed().as_secs_f64();
        gz_files.push(gz);
        // Let a seal in progress finish, as a store at rest would be.
        store.seal_now().unwrap();

        let (ip, port, at) = probe_at.unwrap();
        let rounds = 5;
        let t = Instant::now();
        let mut a = None;
        for _ in 0..rounds {
            a = Some(store.attribute("bench", ip, Some(port), at).unwrap());
        }
        let attribute_secs = t.elapsed().as_secs_f64() / rounds as f64;
        let a = a.unwrap();
        let t = Instant::now();
        let zgrep = Command::new("zgrep")
            .args(["-F", &format!("NAT {ip}:{port} ")])
            .args(&gz_files)
            .output()
            .unwrap();
        let zgrep_secs = t.elapsed().as_secs_f64();
        let point = Point {
            records: checkpoint,
            segments: std::fs::read_dir(dir.join("segments")).unwrap().count(),
            opened: a.scanned.segments,
            read: a.scanned.segments_read,
            blocks: a.scanned.blocks_read,
            attribute_secs,
            zgrep_secs,
            zgrep_lines: zgrep.stdout.iter().filter(|b| **b == b'\n').count(),
            summary: a.summary,
        };
        println!(
            "checkpoint {} records ({:.1} days): attribute {ip}:{port} at {}: {:.4}s, footers of {} of {} segments opened, {} segment reads, {} blocks; zgrep over {} file(s): {:.2}s ({} lines): {:.0}x -> {}",
            point.records,
            point.records as f64 / 400.0 / 86400.0,
            shown(at),
            point.attribute_secs,
            point.opened,
            point.segments,
            point.read,
            point.blocks,
            gz_files.len(),
            point.zgrep_secs,
            point.zgrep_lines,
            point.zgrep_secs / point.attribute_secs,
            point.summary
        );
        points.push(point);
    }

    // The same appends into a store that never seals: the cost of the durable append alone.
    let unsealed_n = n.min(1_000_000);
    let unsealed_dir = tmp.path().join("unsealed");
    let unsealed = Store::init(
        &unsealed_dir,
        &Options {
            seal_max_bytes: u64::MAX,
            seal_max_records: u64::MAX,
            seal_max_age: Duration::from_secs(1 << 40),
            ..Options::default()
        },
    )
    .unwrap();
    let mut unsealed_rng = Lcg(42);
    let mut unsealed_secs = 0.0;
    let mut j = 0;
    while j < unsealed_n {
        let len = BATCH.min(unsealed_n - j);
        let rs: Vec<Record> = (j..j + len)
            .map(|x| flow_no(&mut unsealed_rng, x))
            .collect();
        let t = Instant::now();
        unsealed.append(rs).unwrap();
        unsealed_secs += t.elapsed().as_secs_f64();
        j += len;
    }
    drop(unsealed);
    std::fs::remove_dir_all(&unsealed_dir).unwrap();

    let store_bytes = dir_bytes(&dir.join("segments")) + dir_bytes(&dir.join("inbox"));
    let gz_bytes: u64 = gz_files
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    // Where the bytes go: blocks (the records), filters, footers.
    let (mut block_bytes, mut filter_bytes) = (0, 0);
    for s in &store.view().unwrap().segments {
        block_bytes += s.index.blocks.iter().map(|b| b.len).sum::<u64>();
        filter_bytes += s.index.filter_bytes();
    }

    // The last question again while the live tail holds 60,000 unsealed records (every query
    // decodes the tail).
    let (ip, port, at) = probe_at.unwrap();
    let mut tail_rng = rng;
    let mut j = n;
    while j < n + 60_000 {
        let rs: Vec<Record> = (j..j + BATCH).map(|x| flow_no(&mut tail_rng, x)).collect();
        store.append(rs).unwrap();
        j += BATCH;
    }
    let t = Instant::now();
    store.attribute("bench", ip, Some(port), at).unwrap();
    let with_tail_secs = t.elapsed().as_secs_f64();

    println!(
        "records: {n} NAT'd flows ({} of text, {:.1} bytes/line)",
        text_bytes,
        text_bytes as f64 / n as f64
    );
    println!(
        "append: {:.0} records/s durable ({BATCH} per batch, fsync each; {:.2}s); text lines piped into gzip -9: {:.2}s",
        n as f64 / append_secs,
        append_secs,
        text_secs
    );
    println!(
        "  the first {unsealed_n} appends into a store that never seals: {:.0} records/s (sealing runs on a thread of its own)",
        unsealed_n as f64 / unsealed_secs,
    );
    println!(
        "bytes/record: store {:.1}, gzip -9 text {:.1}: ratio {:.3} (target <= 0.5)",
        store_bytes as f64 / n as f64,
        gz_bytes as f64 / n as f64,
        store_bytes as f64 / gz_bytes as f64
    );
    println!(
        "  of which blocks {:.1}, filters {:.1}, footers and headers {:.1}",
        block_bytes as f64 / n as f64,
        filter_bytes as f64 / n as f64,
        (store_bytes - block_bytes - filter_bytes) as f64 / n as f64
    );
    println!("attribute vs zgrep (target >= 100x at 100 million records, flat as records grow):");
    for p in &points {
        println!(
            "  {:>11} records: attribute {:.4}s (footers of {} of {} segments opened, {} segment reads, {} blocks), zgrep {:.2}s: {:.0}x",
            p.records,
            p.attribute_secs,
            p.opened,
            p.segments,
            p.read,
            p.blocks,
            p.zgrep_secs,
            p.zgrep_secs / p.attribute_secs
        );
    }
    println!("  the last, with 60,000 records in the live tail: {with_tail_secs:.4}s");
}
