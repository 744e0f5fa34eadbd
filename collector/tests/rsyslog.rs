//! rsyslog, started by the test as its own process, forwards to the collector binary over TCP
//! (omfwd) and RELP (omrelp). Under RELP the collector is killed (SIGKILL) and restarted in the
//! middle of the stream: every message still arrives, because the collector answers a message
//! only once it is durable and rsyslog sends unanswered ones again.
//!
//! Skipped with a message when rsyslogd or its RELP module is not installed
//! (`apt-get install rsyslog rsyslog-relp`).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use khetnet_retention::{Options, Store};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `khetnet-collector run` with only `flag ADDR` on and waits until it listens.
fn collector(dir: &Path, store: &Path, flag: &str, port: u16) -> Killed {
    let config = dir.join("khetnet.toml");
    std::fs::write(
        &config,
        "[collector]\nsyslog_udp = \"\"\nsyslog_tcp = \"\"\nsyslog_tls = \"\"\nrelp = \"\"\nradius = \"\"\nnetflow = \"\"\nipfix = \"\"\nallow = [\"127.0.0.1=S1\"]\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_khetnet-collector"))
        .args(["run", "--config"])
        .arg(&config)
        .arg("--store")
        .arg(store)
        .args([flag, &format!("127.0.0.1:{port}")])
        .env_remove("KHETNET_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = lines
            .next()
            .expect("the collector printed its inputs")
            .unwrap();
        if line.contains("listening on") {
            break;
        }
        assert!(Instant::now() < deadline, "the collector did not start");
    }
    // Keep reading stdout so the collector never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Killed(child)
}

fn rsyslog(dir: &Path, input_port: u16, action: &str) -> Killed {
    let work = dir.join("rsyslog");
    std::fs::create_dir_all(&work).unwrap();
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{work}")
module(load="imtcp")
module(load="omrelp")
input(type="imtcp" address="127.0.0.1" port="{input_port}" ruleset="forward")
ruleset(name="forward") {{
  {action}
}}
"#,
            work = work.display()
        ),
    )
    .unwrap();
    let child = Command::new("rsyslogd")
        .args(["-n", "-f"])
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let started = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", input_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "rsyslogd did not start listening"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    started
}

fn message(i: usize) -> String {
    format!("<13>Nov 21 10:59:59 gw app: message-{i:06}\n")
}

/// The message numbers stored (duplicates collapse).
fn stored_numbers(store: &Path) -> BTreeSet<usize> {
    let Ok(store) = Store::open_read(store, &Options::default()) else {
        return BTreeSet::new();
    };
    common::stored(&store)
        .iter()
        .filter_map(common::raw_text)
        .filter_map(|t| {
            let at = t.find("message-")?;
            t[at + 8..at + 14].parse().ok()
        })
        .collect()
}

fn wait_for_all(store: &Path, n: usize, seconds: u64) -> BTreeSet<usize> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let got = stored_numbers(store);
        if got.len() == n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn installed() -> bool {
    common::have("rsyslogd", "rsyslog")
        && (Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/omrelp.so").exists()
            || Path::new("/usr/lib/rsyslog/omrelp.so").exists()
            || {
                eprintln!(
                    "SKIPPED: rsyslog's omrelp module is not installed (apt-get install rsyslog-relp)"
                );
                false
            })
}

#[test]
fn rsyslog_over_tcp() {
    if !installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store: PathBuf = dir.path().join("store");
    let port = free_port();
    let _collector = collector(dir.path(), &store, "--syslog-tcp", port);
    let input = free_port();
    let _rsyslog = rsyslog(
        dir.path(),
        input,
        &format!(
            r#"action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp" TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")"#
        ),
    );
    let n = 500;
    let mut to_rsyslog = TcpStream::connect(("127.0.0.1", input)).unwrap();
    for i in 0..n {
        to_rsyslog.write_all(message(i).as_bytes()).unwrap();
    }
    drop(to_rsyslog);
    let got = wait_for_all(&store, n, 30);
    assert_eq!(
        got.len(),
        n,
        "missing: {:?}",
        (0..n)
            .filter(|i| !got.contains(i))
            .take(10)
            .collect::<Vec<_>>()
    );
}

#[test]
fn rsyslog_over_relp_survives_a_collector_crash() {
    if !installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store: PathBuf = dir.path().join("store");
    let port = free_port();
    let mut first = collector(dir.path(), &store, "--relp", port);
    let input = free_port();
    let _rsyslog = rsyslog(
        dir.path(),
        input,
        &format!(
            r#"action(type="omrelp" target="127.0.0.1" port="{port}" template="RSYSLOG_ForwardFormat"
         action.resumeRetryCount="-1" action.resumeInterval="1"
         queue.type="LinkedList" queue.size="100000")"#
        ),
    );
    let n = 4000;
    let mut to_rsyslog = TcpStream::connect(("127.0.0.1", input)).unwrap();
    for i in 0..n / 2 {
        to_rsyslog.write_all(message(i).as_bytes()).unwrap();
    }
    to_rsyslog.flush().unwrap();
    // Kill the collector once part of the stream has arrived (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(20);
    while stored_numbers(&store).len() < 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let before_crash = stored_numbers(&store).len();
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    // rsyslog keeps sending to a dead port: it queues.
    for i in n / 2..n {
        to_rsyslog.write_all(message(i).as_bytes()).unwrap();
    }
    drop(to_rsyslog);
    std::thread::sleep(Duration::from_secs(1));
    let _second = collector(dir.path(), &store, "--relp", port);
    let got = wait_for_all(&store, n, 60);
    eprintln!(
        "stored before the crash: {before_crash}; after the restart: {}",
        got.len()
    );
    assert!(before_crash < n, "the crash happened mid-stream");
    assert_eq!(
        got.len(),
        n,
        "lost across the crash: {:?}",
        (0..n)
            .filter(|i| !got.contains(i))
            .take(20)
            .collect::<Vec<_>>()
    );
}
