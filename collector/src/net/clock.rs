//! The clock check: the offset to each configured NTP server, measured with SNTP every
//! [`INTERVAL`], logged, exported as `khetnet_collector_clock_offset_seconds{server}`, kept for
//! [`crate::RunningCollector::clock`] and the counters snapshot, and written to the store as a
//! `clock` record (each measurement, or why there is none), so a court can see the clock was
//! checked. An offset over the law's 10 ms is an alert (`khetnet_collector_clock_over_limit{server}`
//! = 1, an error event in the log, `collector.clock` degraded in `/healthz`, and a line in
//! `khetnet-retention status`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use khetnet_retention::counters::ClockCheck;
use khetnet_retention::record::{Body, ClockOffset, Input, Origin, Record};
use tokio::net::UdpSocket;

use super::Shared;
use crate::clock::{self, Measurement};

/// How often each server is asked.
pub const INTERVAL: Duration = Duration::from_secs(300);

/// How long to wait for an answer.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// The last check against one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockReading {
    /// The server as configured.
    pub server: String,
    pub at: Timestamp,
    /// The measurement, or why there is none.
    pub result: Result<Measurement, String>,
}

impl ClockReading {
    /// The record that keeps this reading in the store.
    pub fn record(&self, receive_time: Timestamp) -> Record {
        let nanos = |d: SignedDuration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let (offset_ns, delay_ns, stratum, error) = match &self.result {
            Ok(m) => (
                Some(nanos(m.offset)),
                Some(nanos(m.delay)),
                Some(m.stratum),
                None,
            ),
            Err(e) => (None, None, None, Some(e.clone())),
        };
        Record {
            event_time: self.at,
            receive_time,
            origin: Origin {
                input: Input::Store,
                peer: None,
                import_sha256: None,
            },
            school: None,
            body: Body::Clock(ClockOffset {
                server: self.server.clone(),
                offset_ns,
                delay_ns,
                stratum,
                error,
            }),
        }
    }

    /// The reading as the counters snapshot shows it.
    pub fn check(&self) -> ClockCheck {
        let ms = |d: SignedDuration| d.as_secs_f64() * 1e3;
        ClockCheck {
            server: self.server.clone(),
            at: self.at,
            offset_ms: self.result.as_ref().ok().map(|m| ms(m.offset)),
            delay_ms: self.result.as_ref().ok().map(|m| ms(m.delay)),
            error: self.result.as_ref().err().cloned(),
            over_limit: self.result.as_ref().is_ok_and(Measurement::over_limit),
        }
    }
}

/// The last readings, shared between the check and those who show them.
#[derive(Debug, Clone, Default)]
pub struct Readings(Arc<Mutex<Vec<ClockReading>>>);

impl Readings {
    /// The last check against each server (empty before the first).
    pub fn latest(&self) -> Vec<ClockReading> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, now: Vec<ClockReading>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = now;
    }

    /// What `/healthz` says of the clock: `None` when it was never checked (no server
    /// configured, or before the first check); `Some(Ok(summary))` when every server answered
    /// within 10 ms; `Some(Err(what is wrong and the fix))` otherwise.
    pub fn health(&self) -> Option<Result<String, String>> {
        let readings = self.latest();
        if readings.is_empty() {
            return None;
        }
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for r in &readings {
            match &r.result {
                Ok(m) if m.over_limit() => bad.push(format!(
                    "offset to {} is {:+.1} ms, over the law's 10 ms: synchronise this machine's clock (chrony, systemd-timesyncd)",
                    r.server,
                    m.offset.as_secs_f64() * 1e3
                )),
                Ok(m) => ok.push(format!("{} {:+.1} ms", r.server, m.offset.as_secs_f64() * 1e3)),
                Err(e) => bad.push(format!(
                    "cannot check the clock against {}: {e} (fix collector.ntp_servers or the network path)",
                    r.server
                )),
            }
        }
        Some(if bad.is_empty() {
            Ok(ok.join(", "))
        } else {
            Err(bad.join("; "))
        })
    }
}

/// Asks `server` (`HOST[:PORT]`, port 123 by default) once.
///
/// # Errors
/// Why no usable answer came: resolution, timeout, or an unusable reply.
pub async fn measure(server: &str) -> Result<Measurement, String> {
    let target = if server.parse::<std::net::SocketAddr>().is_ok() {
        server.to_owned()
    } else if let Ok(ip) = server.parse::<std::net::IpAddr>() {
        std::net::SocketAddr::new(ip, 123).to_string()
    } else if server.contains(':') {
        server.to_owned()
    } else {
        format!("{server}:123")
    };
    let addr = tokio::net::lookup_host(&target)
        .await
        .map_err(|e| format!("cannot resolve {server}: {e}"))?
        .next()
        .ok_or_else(|| format!("{server} resolves to no address"))?;
    let local = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    socket.connect(addr).await.map_err(|e| e.to_string())?;
    let sent = Timestamp::now();
    socket
        .send(&clock::request(sent))
        .await
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut buf = [0u8; 128];
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .map_err(|_| format!("no answer from {addr} within {}s", TIMEOUT.as_secs()))?
            .map_err(|e| format!("{addr}: {e}"))?;
        let received = Timestamp::now();
        match clock::response(&buf[..n], sent, received) {
            Ok(m) => return Ok(m),
            // A stray reply (not ours) is ignored; anything else is the answer.
            Err(e) if e.contains("originate") => continue,
            Err(e) => return Err(format!("{addr}: {e}")),
        }
    }
}

/// Checks every server now, keeps the readings and stores one `clock` record per server.
pub async fn check(servers: &[String], readings: &Readings, shared: &Shared) {
    let mut now = Vec::new();
    for server in servers {
        let result = measure(server).await;
        match &result {
            Ok(m) => {
                let secs = m.offset.as_secs_f64();
                metrics::gauge!("khetnet_collector_clock_offset_seconds", "server" => server.clone()).set(secs);
                metrics::gauge!("khetnet_collector_clock_over_limit", "server" => server.clone())
                    .set(if m.over_limit() { 1.0 } else { 0.0 });
                if m.over_limit() {
                    tracing::error!(server = %server, offset_ms = m.offset.as_millis() as i64, delay_ms = m.delay.as_millis() as i64,
                        "clock offset over the law's 10 ms: synchronise this machine's clock (chrony, systemd-timesyncd)");
                } else {
                    tracing::info!(server = %server, offset_ms = m.offset.as_secs_f64() * 1e3, delay_ms = m.delay.as_secs_f64() * 1e3, "clock offset measured");
                }
            }
            Err(error) => {
                metrics::counter!("khetnet_collector_clock_errors_total", "server" => server.clone()).increment(1);
                tracing::warn!(server = %server, error = %error, "clock check failed");
            }
        }
        now.push(ClockReading {
            server: server.clone(),
            at: Timestamp::now(),
            result,
        });
    }
    let records: Vec<Record> = now.iter().map(|r| r.record(shared.store.now())).collect();
    readings.set(now);
    if !shared.writer.append(records).await {
        tracing::error!("the clock check could not be stored");
    }
}

/// Checks at start and every `interval` until `shared.shutdown`.
pub async fn run_clock_check(
    servers: Vec<String>,
    interval: Duration,
    readings: Readings,
    shared: Shared,
) {
    let shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = check(&servers, &readings, &shared) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
