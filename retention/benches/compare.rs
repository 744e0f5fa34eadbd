//! The retention store against what Thai log servers do today (text lines, `gzip -9`, `zgrep`),
//! measured in the same run, reported as ratios:
//!
//! - sustained durable append (records/s, every batch fsynced);
//! - on-disk bytes per traffic record vs the same records as `gzip -9` text lines;
//! - `attribute` for one public IP:port at one time vs `zgrep` over the gzip file.
//!
//! `BENCH_RECORDS` (default 1,000,000) NAT'd flows at 400 records/s (a large district's rate),
//! from 5,000 hosts behind 8 public addresses. Run:
//! `cargo bench -p khetnet-retention --bench compare`.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use khetnet_retention::query;
use khetnet_retention::record::{Body, Flow, Input, Origin, Record, Session, SessionStatus};
use khetnet_retention::store::shown;
use khetnet_retention::{Options, Store};

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

fn dir_bytes(dir: &std::path::Path) -> u64 {
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

fn main() {
    let n: u64 = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let batch = 2_000u64;
    let tmp =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let start: Timestamp = "2026-03-10T00:00:00Z".parse().unwrap();
    let mut rng = Lcg(42);

    // Sessions naming the user of each host, so that attribution ends at a person.
    let sessions: Vec<Record> = (0..5000u64)
        .map(|h| Record {
            event_time: start - SignedDuration::from_mins(30),
            receive_time: start - SignedDuration::from_mins(30),
            origin: Origin {
                input: Input::Radius,
                peer: None,
                import_sha256: None,
            },
            school: Some(format!("S{:03}", h % 200)),
            body: Body::Session(Session {
                status: SessionStatus::Start,
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
        .collect();

    // Generate first, so that generation is not timed.
    let records: Vec<Record> = (0..n)
        .map(|i| {
            flow(
                &mut rng,
                start + SignedDuration::from_micros((i * 2500) as i64),
            )
        })
        .collect();

    // gzip -9 text lines: the peer.
    let text_path = tmp.path().join("flows.log");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&text_path).unwrap());
        for r in &records {
            f.write_all(line(r).as_bytes()).unwrap();
        }
    }
    let text_bytes = std::fs::metadata(&text_path).unwrap().len();
    let t = Instant::now();
    assert!(
        Command::new("gzip")
            .args(["-9", "-k", "-f"])
            .arg(&text_path)
            .status()
            .unwrap()
            .success()
    );
    let gzip_secs = t.elapsed().as_secs_f64();
    let gz_path = tmp.path().join("flows.log.gz");
    let gz_bytes = std::fs::metadata(&gz_path).unwrap().len();

    // The store.
    let dir = tmp.path().join("store");
    let opts = Options::default();
    let store = Store::init(&dir, &opts).unwrap();
    store.append(sessions).unwrap();
    let t = Instant::now();
    for chunk in records.chunks(batch as usize) {
        store.append(chunk.to_vec()).unwrap();
    }
    let append_secs = t.elapsed().as_secs_f64();
    store.seal_now().unwrap();

    // The same appends into a store that never seals: the cost of the durable append alone.
    let unsealed_dir = tmp.path().join("unsealed");
    let unsealed = Store::init(
        &unsealed_dir,
        &Options {
            seal_max_bytes: u64::MAX,
            seal_max_age: std::time::Duration::from_secs(1 << 40),
            ..Options::default()
        },
    )
    .unwrap();
    let t = Instant::now();
    for chunk in records.chunks(batch as usize) {
        unsealed.append(chunk.to_vec()).unwrap();
    }
    let unsealed_secs = t.elapsed().as_secs_f64();
    drop(unsealed);
    std::fs::remove_dir_all(&unsealed_dir).unwrap();
    let store_bytes = dir_bytes(&dir.join("segments")) + dir_bytes(&dir.join("inbox"));
    // Where the bytes go: blocks (the records), filters, footers.
    let (mut block_bytes, mut filter_bytes) = (0, 0);
    for s in &store.view().unwrap().segments {
        block_bytes += s.index.blocks.iter().map(|b| b.len).sum::<u64>();
        filter_bytes += s.index.filter_bytes();
    }

    // attribute vs zgrep: a public IP:port at the time of a record in the middle.
    let probe = &records[(n / 2) as usize];
    let Body::Flow(f) = &probe.body else {
        unreachable!()
    };
    let (ip, port, at) = (
        f.nat_src_ip.unwrap(),
        f.nat_src_port.unwrap(),
        probe.event_time,
    );
    let t = Instant::now();
    let rounds = 5;
    let mut a = None;
    for _ in 0..rounds {
        let view = store.view().unwrap();
        a = Some(query::attribute(&view, ip, Some(port), at).unwrap());
    }
    let attribute_secs = t.elapsed().as_secs_f64() / rounds as f64;
    let t = Instant::now();
    let view = store.view().unwrap();
    let view_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    query::attribute(&view, ip, Some(port), at).unwrap();
    let lookup_secs = t.elapsed().as_secs_f64();
    let a = a.unwrap();
    let t = Instant::now();
    let zgrep = Command::new("zgrep")
        .args(["-F", &format!("NAT {ip}:{port} ")])
        .arg(&gz_path)
        .output()
        .unwrap();
    let zgrep_secs = t.elapsed().as_secs_f64();

    // The same question while the live tail holds 60,000 unsealed records (every query decodes
    // the tail).
    let mut tail_rng = Lcg(7);
    let tail: Vec<Record> = (0..60_000u64)
        .map(|i| {
            flow(
                &mut tail_rng,
                start + SignedDuration::from_micros((n * 2500 + i * 2500) as i64),
            )
        })
        .collect();
    for chunk in tail.chunks(batch as usize) {
        store.append(chunk.to_vec()).unwrap();
    }
    let t = Instant::now();
    query::attribute(&store.view().unwrap(), ip, Some(port), at).unwrap();
    let with_tail_secs = t.elapsed().as_secs_f64();

    println!(
        "records: {n} NAT'd flows ({} of text, {:.1} bytes/line)",
        text_bytes,
        text_bytes as f64 / n as f64
    );
    println!(
        "append: {:.0} records/s durable ({} per batch, fsync each; {:.2}s); gzip -9 of the text: {:.2}s",
        n as f64 / append_secs,
        batch,
        append_secs,
        gzip_secs
    );
    println!(
        "  the same appends into a store that never seals: {:.0} records/s (sealing runs on a thread of its own; it took {:.0}% of the time in the run above)",
        n as f64 / unsealed_secs,
        100.0 * (1.0 - unsealed_secs / append_secs)
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
    println!(
        "attribute {ip}:{port} at {}: {:.4}s ({} of {} segments, {} blocks read) -> {}",
        shown(at),
        attribute_secs,
        a.scanned.segments_read,
        a.scanned.segments,
        a.scanned.blocks_read,
        a.summary
    );
    println!(
        "  of which: loading the view (segment footers) {view_secs:.4}s, the lookups {lookup_secs:.4}s"
    );
    println!("  with 60,000 records in the live tail: {with_tail_secs:.4}s");
    println!(
        "zgrep: {:.4}s ({} lines): attribute is {:.1}x faster (target >= 100 at 100 million records)",
        zgrep_secs,
        zgrep.stdout.iter().filter(|b| **b == b'\n').count(),
        zgrep_secs / attribute_secs
    );
}
