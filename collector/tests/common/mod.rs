//! What the collector's integration tests share: a collector on loopback port 0 over a
//! temporary store, and ways to wait for what it stored.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use khetnet_collector::{Collector, RunningCollector, Settings};
use khetnet_config::CollectorConfig;
use khetnet_retention::query::{Query, search};
use khetnet_retention::{Options, Record, Store};
use tokio_util::sync::CancellationToken;

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub store: Arc<Store>,
    pub running: Option<RunningCollector>,
    pub shutdown: CancellationToken,
}

/// Every input on 127.0.0.1 port 0; 127.0.0.1 allowed as school S1; RADIUS secret `s3cret`.
pub fn loopback_config() -> CollectorConfig {
    CollectorConfig {
        syslog_udp: "127.0.0.1:0".into(),
        syslog_tcp: "127.0.0.1:0".into(),
        syslog_tls: "".into(),
        relp: "127.0.0.1:0".into(),
        radius: "127.0.0.1:0".into(),
        netflow: "127.0.0.1:0".into(),
        ipfix: "".into(),
        allow: vec!["127.0.0.1=S1".into()],
        radius_secret: Some("s3cret".into()),
        ..CollectorConfig::default()
    }
}

impl Harness {
    pub async fn start(config: CollectorConfig) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(Store::open_or_init(dir.path().join("store"), &Options::default()).unwrap());
        let shutdown = CancellationToken::new();
        let settings = Settings::from_config(&config).unwrap();
        let running = Collector::start_with(settings, store.clone(), shutdown.clone()).await;
        Harness {
            dir,
            store,
            running: Some(running),
            shutdown,
        }
    }

    pub fn running(&self) -> &RunningCollector {
        self.running.as_ref().unwrap()
    }

    pub fn addr(&self, input: &str) -> std::net::SocketAddr {
        self.running()
            .local_addr(input)
            .unwrap_or_else(|| panic!("{input} is not listening: {:?}", self.running().inputs()))
    }

    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown(Duration::from_secs(10)).await;
        }
    }

    /// Every record stored so far.
    pub fn records(&self) -> Vec<Record> {
        stored(&self.store)
    }

    /// Waits (at most 20 s) until `pred` holds for the stored records; returns them.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Record]) -> bool) -> Vec<Record> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let records = self.records();
            if pred(&records) {
                return records;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; stored: {records:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn stored(store: &Store) -> Vec<Record> {
    let view = store.view().unwrap();
    let q = Query::between(
        "2000-01-01T00:00:00Z".parse().unwrap(),
        "2100-01-01T00:00:00Z".parse().unwrap(),
    );
    search(&view, &q)
        .unwrap()
        .0
        .into_iter()
        .map(|h| h.record)
        .collect()
}

/// Whether a program is installed; prints why a test is skipped when not.
pub fn have(program: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
        .unwrap_or(false);
    if !found {
        eprintln!("SKIPPED: `{program}` is not installed (apt-get install {package})");
    }
    found
}

/// The raw text of a raw record, or the session user of a session.
pub fn raw_text(record: &Record) -> Option<String> {
    match &record.body {
        khetnet_retention::record::Body::Raw(raw) => {
            Some(String::from_utf8_lossy(&raw.data).into_owned())
        }
        _ => None,
    }
}

/// A loopback TCP port free now, and not handed to another test of this process before: the
/// port is released before the program under test binds it, and the kernel may give a port just
/// released to the next `bind(0)`; two tests running at once would then share it (a plain-text
/// client of one talking to the other's TLS listener).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// A process killed when the test ends, however it ends.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the `khetnet-collector run` binary over `store` with every input off except those
/// `args` turn on (`--syslog-tcp ADDR ...`), 127.0.0.1 allowed as school S1 and `extra` lines
/// added to `[collector]`; waits until it listens.
pub fn run_collector(dir: &Path, store: &Path, args: &[&str], extra: &str) -> Killed {
    let config = dir.join("khetnet.toml");
    std::fs::write(
        &config,
        format!("[collector]\nsyslog_udp = \"\"\nsyslog_tcp = \"\"\nsyslog_tls = \"\"\nrelp = \"\"\nradius = \"\"\nnetflow = \"\"\nipfix = \"\"\nallow = [\"127.0.0.1=S1\"]\n{extra}"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_khetnet-collector"))
        .args(["run", "--config"])
        .arg(&config)
        .arg("--store")
        .arg(store)
        .args(args)
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

/// Sends `signal` (`TERM`, `STOP`, `CONT`) to a process.
pub fn signal(process: &Killed, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &process.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal}");
}

/// Stops a collector with SIGTERM (a clean shutdown) and waits (at most 30 s) for it to exit.
pub fn terminate(mut collector: Killed) -> ExitStatus {
    signal(&collector, "TERM");
    wait_exit(&mut collector)
}

/// Waits (at most 30 s) for a process to exit.
pub fn wait_exit(process: &mut Killed) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = process.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the process did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}
