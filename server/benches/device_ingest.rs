//! Device-report ingestion through a real `khetnet serve` over loopback HTTP: several agents,
//! each sending reports of 50 samples from concurrent clients; prints reports/s, samples/s and
//! latency percentiles. Run by `bench/device-ingest.sh` (SQLite, then PostgreSQL when
//! `KHETNET_TEST_DATABASE_URL` is set).
//!
//! Bounded: `BENCH_REPORTS` reports in all (default 60,000) and at most `BENCH_SECS` seconds
//! (default 60), `BENCH_CLIENTS` clients (default 32) over `BENCH_AGENTS` agents (default 16).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SAMPLES_PER_REPORT: usize = 50;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(database_url: Option<&str>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_khetnet"));
    cmd.args(["serve", "--no-collector", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data")
        .arg(dir.path())
        .env("KHETNET_ADMIN_PASSWORD", "bench-admin-password")
        .env("KHETNET_LOGGING_LEVEL", "warn")
        // Every agent enrolls from 127.0.0.1; the per-address throttle would stop the set-up.
        .env("KHETNET_AUTH_LOGIN_ATTEMPTS_PER_MINUTE", "100000")
        .stdout(Stdio::null());
    if let Some(url) = database_url {
        cmd.env("KHETNET_DATABASE_URL", url);
    }
    let child = cmd.spawn().expect("starting khetnet serve");
    Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

async fn call(client: &reqwest::Client, url: &str, token: Option<&str>, body: Value) -> Value {
    let mut req = client.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {body}");
    body
}

fn uuid(n: u64, agent: usize) -> String {
    let h = format!("{:016x}{:016x}", agent as u64, n);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

struct Run {
    reports: u64,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU seconds (user + system) the server and this client took while reports were sent.
    server_cpu: f64,
    client_cpu: f64,
}

/// User + system CPU seconds of a process so far (`self` or a pid), from `/proc/PID/stat`.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

async fn run(label: &str, database_url: Option<&str>) -> Run {
    let total = env_or("BENCH_REPORTS", 60_000);
    let max_secs = env_or("BENCH_SECS", 60);
    let clients = env_or("BENCH_CLIENTS", 32) as usize;
    let agents = env_or("BENCH_AGENTS", 16) as usize;
    let server = start(database_url);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{}/healthz", server.url)).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "{label}: server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let login = call(
        &client,
        &format!("{}/api/v1/auth/login", server.url),
        None,
        json!({ "username": "admin", "password": "bench-admin-password" }),
    )
    .await;
    let admin = login["token"].as_str().expect("a token").to_owned();
    // One school per agent, 10 devices each: a report carries 5 samples of each device.
    let mut bodies = Vec::new();
    let mut credentials = Vec::new();
    for a in 0..agents {
        let school = call(
            &client,
            &format!("{}/api/v1/schools", server.url),
            Some(&admin),
            json!({ "code": format!("10570{a:05}"), "kind": "school", "name_th": format!("โรงเรียน {a}") }),
        )
        .await["id"]
            .as_i64()
            .unwrap();
        let mut devices = Vec::new();
        for d in 0..10 {
            devices.push(
                call(
                    &client,
                    &format!("{}/api/v1/devices", server.url),
                    Some(&admin),
                    json!({ "school_id": school, "name": format!("device-{d}"), "probe": "icmp", "address": format!("10.{a}.0.{d}") }),
                )
                .await["id"]
                    .as_i64()
                    .unwrap(),
            );
        }
        let token = call(
            &client,
            &format!("{}/api/v1/agents/enrollment-tokens", server.url),
            Some(&admin),
            json!({ "school_id": school }),
        )
        .await["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let enrolled = call(
            &client,
            &format!("{}/api/v1/agents/enroll", server.url),
            None,
            json!({ "token": token, "name": format!("agent-{a}") }),
        )
        .await;
        credentials.push(enrolled["credential"].as_str().unwrap().to_owned());
        let now = jiff::Timestamp::now();
        let samples: Vec<Value> = (0..SAMPLES_PER_REPORT)
            .map(|i| {
                let at = now - jiff::SignedDuration::from_secs((SAMPLES_PER_REPORT - i) as i64);
                json!({ "device_id": devices[i % devices.len()], "at": at.to_string(), "ok": true,
                        "latency_ms": 1.0 + (i % 7) as f64, "loss_percent": 0.0 })
            })
            .collect();
        // Serialized once: per report only the batch id between the two halves is new.
        let body = json!({ "batch_id": "BATCH", "agent_version": "bench", "samples": samples })
            .to_string();
        let (head, tail) = body.split_once("BATCH").unwrap();
        bodies.push((head.to_owned(), tail.to_owned()));
    }

    let next = Arc::new(AtomicU64::new(0));
    let cpu_before = (cpu_secs("self"), cpu_secs(&server.child.id().to_string()));
    let started = Instant::now();
    let stop_at = started + Duration::from_secs(max_secs);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let client = client.clone();
        let url = format!("{}/api/v1/agent/reports", server.url);
        let next = next.clone();
        let agent = c % agents;
        let credential = credentials[agent].clone();
        let (head, tail) = bodies[agent].clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total || Instant::now() >= stop_at {
                    break;
                }
                let id = uuid(n, agent);
                let mut body = String::with_capacity(head.len() + id.len() + tail.len());
                body.push_str(&head);
                body.push_str(&id);
                body.push_str(&tail);
                let sent = Instant::now();
                let resp = client
                    .post(&url)
                    .bearer_auth(&credential)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("sending a report");
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                assert!(status.is_success(), "report refused: {status} {text}");
                latencies.push(sent.elapsed());
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    let client_cpu = cpu_secs("self") - cpu_before.0;
    let server_cpu = cpu_secs(&server.child.id().to_string()) - cpu_before.1;
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let result = Run {
        reports: latencies.len() as u64,
        secs,
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        server_cpu,
        client_cpu,
    };
    drop(server);
    result
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut engines: Vec<(&str, Option<String>)> = vec![("sqlite", None)];
    match std::env::var("KHETNET_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => engines.push(("postgres", Some(url))),
        _ => eprintln!(
            "PostgreSQL skipped: set KHETNET_TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test)"
        ),
    }
    println!(
        "{:<9} {:>9} {:>8} {:>10} {:>12} {:>8} {:>8} {:>9} {:>9}  target",
        "engine",
        "reports",
        "secs",
        "reports/s",
        "samples/s",
        "p50 ms",
        "p99 ms",
        "server %",
        "client %"
    );
    for (label, url) in engines {
        let fresh = url
            .as_deref()
            .map(|admin| rt.block_on(fresh_postgres(admin)));
        let r = rt.block_on(run(label, fresh.as_deref()));
        if let (Some(admin), Some(_)) = (&url, &fresh) {
            rt.block_on(drop_postgres(admin));
        }
        let rate = r.reports as f64 / r.secs;
        println!(
            "{label:<9} {:>9} {:>8.1} {:>10.0} {:>12.0} {:>8.1} {:>8.1} {:>9.0} {:>9.0}  {} 5000 reports/s",
            r.reports,
            r.secs,
            rate,
            rate * SAMPLES_PER_REPORT as f64,
            r.p50_ms,
            r.p99_ms,
            100.0 * r.server_cpu / r.secs,
            100.0 * r.client_cpu / r.secs,
            if rate >= 5000.0 { "meets" } else { "BELOW" }
        );
    }
}

/// The name of this run's database.
fn bench_database() -> String {
    format!("khetnet_bench_{}", std::process::id())
}

/// Drops this run's database (the server has stopped).
async fn drop_postgres(admin_url: &str) {
    use sqlx::{Connection, Executor};
    let mut conn = sqlx::AnyConnection::connect(admin_url).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        bench_database()
    )))
    .await
    .unwrap();
}

/// A fresh database next to the one in `admin_url`, so every run starts empty.
async fn fresh_postgres(admin_url: &str) -> String {
    use sqlx::{Connection, Executor};
    sqlx::any::install_default_drivers();
    let name = bench_database();
    let mut conn = sqlx::AnyConnection::connect(admin_url).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .await
    .unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin_url, String::new()),
    };
    let prefix = &base[..base.rfind('/').unwrap()];
    format!("{prefix}/{name}{query}")
}
