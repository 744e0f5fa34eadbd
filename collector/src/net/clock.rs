//! The clock check: the offset to each configured NTP server, measured with SNTP every
//! [`INTERVAL`], logged, exported as `khetnet_collector_clock_offset_seconds{server}` and kept for
//! [`crate::RunningCollector::clock`]. An offset over the law's 10 ms is an alert
//! (`khetnet_collector_clock_over_limit{server}` = 1 and an error event).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

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

/// Checks every server now and records the readings.
pub async fn check(servers: &[String], readings: &Mutex<Vec<ClockReading>>) {
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
    *readings.lock().unwrap_or_else(|p| p.into_inner()) = now;
}

/// Checks at start and every `interval` until `shutdown`.
pub async fn run_clock_check(
    servers: Vec<String>,
    interval: Duration,
    readings: Arc<Mutex<Vec<ClockReading>>>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = check(&servers, &readings) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
