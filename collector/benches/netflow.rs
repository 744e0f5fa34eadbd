//! NetFlow v9 ingest, end to end: the `khetnet-collector` binary, started with a fresh store and
//! only its NetFlow input on loopback, receives v9 datagrams (a template set in the first and in
//! every 64th datagram, as exporters refresh them; 30 flows of 45 bytes each, NAT fields
//! included) from a sender in this process, decodes them and stores the flows.
//!
//! Two runs of `BENCH_FLOWS` flows (default 2,000,000) each, a fresh collector for each:
//!
//! - as fast as one sender thread can send: the most the collector decodes and stores;
//! - paced at `BENCH_FLOWS_PER_SEC` (default 200,000, the target): whether that rate is kept
//!   without loss.
//!
//! Reported per run: flows sent, flows stored (read from the store after the collector has
//! stopped), flows/s stored (from the first datagram sent until the append of the last batch
//! returned, by the writer's `batch stored` events), datagrams the kernel dropped at the
//! collector's socket (`/proc/net/udp`), flows the collector dropped because its writer was
//! behind (its warnings), its CPU-seconds per million flows and its peak RSS. Loopback only;
//! bounded in count and time. Run:
//! `cargo bench -p khetnet-collector --bench netflow` (`BENCH_FLOWS=300000` for a short run).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use khetnet_retention::{Options, Store};

/// Flows per datagram: 20 + 4 + 30 * 45 = 1374 bytes, under a 1500-byte MTU.
const FLOWS_PER_DATAGRAM: usize = 30;
/// A template set goes into the first and every this-many-th datagram.
const TEMPLATE_EVERY: u64 = 64;
/// The longest a run may take.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// (field type, length): addresses, ports, protocol, octets, packets, first and last switched,
/// postNATSourceIPv4Address and postNAPTSourceTransportPort (RFC 3954, IANA ids).
const TEMPLATE: &[(u16, u16)] = &[
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (1, 4),
    (2, 4),
    (22, 4),
    (21, 4),
    (225, 4),
    (227, 2),
    (10, 4), // input interface (SNMP index): not stored, as on a real exporter
    (14, 4), // output interface
    (6, 1),  // TCP flags
    (5, 1),  // type of service
];
const RECORD_LEN: usize = 45;
const TEMPLATE_ID: u16 = 256;

fn main() {
    let flows: u64 = env("BENCH_FLOWS", 2_000_000);
    let paced: u64 = env("BENCH_FLOWS_PER_SEC", 200_000);
    let exe = Path::new(env!("CARGO_BIN_EXE_khetnet-collector"));
    let mut results = Vec::new();
    for rate in [None, Some(paced)] {
        eprintln!(
            "== NetFlow v9: {flows} flows, {}",
            rate.map_or("unpaced".into(), |r| format!("paced at {r} flows/s"))
        );
        let result = run(exe, flows, rate);
        eprintln!("{result:?}");
        results.push(result);
    }
    println!();
    println!(
        "NetFlow v9 ingest into the retention store, over loopback; {}, {} cores",
        Timestamp::now().strftime("%Y-%m-%dT%H:%MZ"),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12} {:>8} {:>7}",
        "offered",
        "sent",
        "stored",
        "lost",
        "flows/s",
        "kernel drop",
        "writer drop",
        "CPU-s/M",
        "RSS MB"
    );
    for r in &results {
        println!(
            "{:<10} {:>10} {:>10} {:>10} {:>10.0} {:>12} {:>12} {:>8.2} {:>7.1}",
            r.offered.map_or("max".into(), |o| o.to_string()),
            r.sent,
            r.stored,
            r.sent.saturating_sub(r.stored),
            r.stored as f64 / r.seconds,
            r.kernel_dropped_datagrams,
            r.writer_dropped_flows,
            r.cpu_seconds / (r.stored.max(1) as f64 / 1e6),
            r.peak_rss_kb as f64 / 1024.0
        );
    }
    println!("(kernel drop: datagrams of {FLOWS_PER_DATAGRAM} flows; target: >= 200000 flows/s)");
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

#[derive(Debug)]
struct RunResult {
    offered: Option<u64>,
    sent: u64,
    stored: u64,
    seconds: f64,
    kernel_dropped_datagrams: u64,
    writer_dropped_flows: u64,
    cpu_seconds: f64,
    peak_rss_kb: u64,
}

fn run(exe: &Path, flows: u64, rate: Option<u64>) -> RunResult {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("khetnet.toml");
    let store = dir.path().join("store");
    std::fs::write(
        &config,
        format!(
            "[collector]\nsyslog_udp = \"\"\nsyslog_tcp = \"\"\nsyslog_tls = \"\"\nrelp = \"\"\n\
             radius = \"\"\nnetflow = \"127.0.0.1:0\"\nipfix = \"\"\nallow = [\"127.0.0.1/32\"]\n\n\
             [retention]\nstore = \"{}\"\n",
            store.display()
        ),
    )
    .expect("writing the configuration");
    let log = dir.path().join("collector.log");
    let mut child = Command::new(exe)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info,khetnet_collector::net::writer=debug")
        .env("NO_COLOR", "1")
        .env_remove("KHETNET_CONFIG")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("the log file"))
        .spawn()
        .expect("starting khetnet-collector");
    let target = listening_on(&mut child);
    let pid = child.id();
    let cpu_before = cpu_seconds(pid);

    let socket = UdpSocket::bind("127.0.0.1:0").expect("a sender socket");
    socket.connect(target).expect("connect");
    let started = Instant::now();
    let started_at = Timestamp::now();
    let datagrams = flows.div_ceil(FLOWS_PER_DATAGRAM as u64);
    let mut packet = Vec::with_capacity(1500);
    let mut sent = 0u64;
    for seq in 0..datagrams {
        if started.elapsed() > RUN_LIMIT {
            break;
        }
        if let Some(rate) = rate {
            // Wait until this datagram's turn at the offered rate.
            let due =
                Duration::from_secs_f64((seq * FLOWS_PER_DATAGRAM as u64) as f64 / rate as f64);
            while started.elapsed() < due {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        let count = (flows - sent).min(FLOWS_PER_DATAGRAM as u64) as usize;
        datagram(&mut packet, seq, count, seq % TEMPLATE_EVERY == 0);
        // Loopback: a full socket buffer makes send wait (or the kernel drops at the
        // receiver); both show below.
        if socket.send(&packet).is_ok() {
            sent += count as u64;
        }
    }

    // Wait until the stored count stops moving (or everything is stored).
    let mut last = (0, None);
    let mut changed = Instant::now();
    loop {
        let now = stored_by_log(&log);
        if now.0 != last.0 {
            last = now;
            changed = Instant::now();
        }
        if last.0 >= sent
            || changed.elapsed() > Duration::from_secs(3)
            || started.elapsed() > RUN_LIMIT + Duration::from_secs(60)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let kernel_dropped_datagrams = socket_drops(target.port());
    let cpu_seconds = cpu_seconds(pid) - cpu_before;
    let peak_rss_kb = peak_rss_kb(pid);
    stop(&mut child);
    let seconds = last.1.map_or(f64::INFINITY, |end| {
        end.duration_since(started_at).as_secs_f64().max(1e-6)
    });
    let stored = Store::open_read(&store, &Options::default())
        .and_then(|s| s.status())
        .map(|s| s.records)
        .expect("reading the store's status");
    RunResult {
        offered: rate,
        sent,
        stored,
        seconds,
        kernel_dropped_datagrams,
        writer_dropped_flows: writer_drops(&log),
        cpu_seconds,
        peak_rss_kb,
    }
}

/// Reads the collector's start-up lines until the NetFlow input's address.
fn listening_on(child: &mut Child) -> SocketAddr {
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    while let Some(Ok(line)) = lines.next() {
        if let Some(addr) = line
            .strip_prefix("netflow")
            .and_then(|l| l.trim().strip_prefix("listening on "))
        {
            let addr = addr.trim().parse().expect("an address");
            // Keep reading stdout so that the collector never blocks on it.
            std::thread::spawn(move || for _ in lines {});
            return addr;
        }
        if line.contains("DOWN") {
            panic!("the NetFlow input did not start: {line}");
        }
    }
    panic!("khetnet-collector ended before listening");
}

/// One v9 datagram of `count` flows (and the template when `template`) into `out`.
fn datagram(out: &mut Vec<u8>, seq: u64, count: usize, template: bool) {
    const UPTIME_MS: u32 = 3_600_000;
    out.clear();
    let now = Timestamp::now().as_second() as u32;
    // Header: version, record count (template + data records), uptime, unix secs, sequence,
    // source id.
    out.extend(9u16.to_be_bytes());
    out.extend((count as u16 + u16::from(template)).to_be_bytes());
    out.extend(UPTIME_MS.to_be_bytes());
    out.extend(now.to_be_bytes());
    out.extend((seq as u32).to_be_bytes());
    out.extend(0u32.to_be_bytes());
    if template {
        let len = 4 + 4 + 4 * TEMPLATE.len();
        out.extend(0u16.to_be_bytes());
        out.extend((len as u16).to_be_bytes());
        out.extend(TEMPLATE_ID.to_be_bytes());
        out.extend((TEMPLATE.len() as u16).to_be_bytes());
        for (id, len) in TEMPLATE {
            out.extend(id.to_be_bytes());
            out.extend(len.to_be_bytes());
        }
    }
    let set_start = out.len();
    out.extend(TEMPLATE_ID.to_be_bytes());
    out.extend([0, 0]);
    for i in 0..count as u64 {
        let n = seq * FLOWS_PER_DATAGRAM as u64 + i;
        let host = (n % 5000) as u32;
        out.extend([
            10,
            1 + (host / 65536) as u8,
            (host / 256 % 256) as u8,
            (host % 256) as u8,
        ]);
        out.extend([
            1 + (n % 220) as u8,
            (n / 7 % 256) as u8,
            (n / 13 % 256) as u8,
            1 + (n % 254) as u8,
        ]);
        out.extend((1024 + (n % 60000) as u16).to_be_bytes());
        out.extend([443u16, 80, 53, 123][(n % 4) as usize].to_be_bytes());
        out.push([6, 6, 17, 17][(n % 4) as usize]);
        out.extend((40 + (n % 100_000) as u32).to_be_bytes());
        out.extend((1 + (n % 90) as u32).to_be_bytes());
        out.extend((UPTIME_MS - 60_000).to_be_bytes());
        out.extend((UPTIME_MS - 1_000).to_be_bytes());
        out.extend([203, 0, 113, 1 + (host % 8) as u8]);
        out.extend((20_000 + (n % 40_000) as u16).to_be_bytes());
        out.extend(2u32.to_be_bytes());
        out.extend(1u32.to_be_bytes());
        out.push(0x18);
        out.push(0);
    }
    debug_assert_eq!(out.len() - set_start - 4, count * RECORD_LEN);
    while !(out.len() - set_start).is_multiple_of(4) {
        out.push(0);
    }
    let len = ((out.len() - set_start) as u16).to_be_bytes();
    out[set_start + 2] = len[0];
    out[set_start + 3] = len[1];
}

/// Records the collector's appends have returned for, and when the last one returned.
fn stored_by_log(log: &Path) -> (u64, Option<Timestamp>) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut total = 0;
    let mut at = None;
    for line in text.lines().filter(|l| l.contains("batch stored")) {
        if let Some(n) = field(line, "records=") {
            total += n;
            at = line.split_whitespace().next().and_then(|t| t.parse().ok());
        }
    }
    (total, at)
}

/// Flows the collector dropped because its writer was behind (it warns with the count).
fn writer_drops(log: &Path) -> u64 {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("records dropped"))
        .filter_map(|l| field(l, "records="))
        .sum()
}

fn field(line: &str, key: &str) -> Option<u64> {
    let at = line.find(key)? + key.len();
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Datagrams the kernel dropped at the UDP socket bound to `port` (the last column of
/// /proc/net/udp).
fn socket_drops(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(&local))
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// SIGTERM, then wait (the collector stores what it has and signs the head).
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
