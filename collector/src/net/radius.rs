//! RADIUS accounting over UDP: each Accounting-Request is answered only once its record is
//! durable, so a client whose request was not stored sends it again.

use std::net::SocketAddr;
use std::sync::Arc;

use khetnet_retention::record::Input;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use super::Shared;
use super::sources::Count;
use crate::radius::{self, Outcome};
use crate::source::AllowList;

/// Requests waiting for the store at once, at most. When all are taken the collector stops
/// reading: the kernel buffer fills, and clients retry.
pub const IN_FLIGHT: usize = 1024;

/// The shared secret of each RADIUS client.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// `ADDRESS[/PREFIX]=SECRET` entries (longest prefix wins).
    pub clients: AllowList,
    /// The secret of clients not listed.
    pub default: Option<String>,
}

impl Secrets {
    /// The secret `peer` signs with, if one is configured.
    pub fn lookup(&self, peer: std::net::IpAddr) -> Option<&str> {
        match self.clients.lookup(peer) {
            Some(Some(secret)) => Some(secret),
            _ => self.default.as_deref(),
        }
    }
}

/// Receives Accounting-Requests on `socket` until `shared.shutdown`.
pub async fn run_radius(socket: UdpSocket, secrets: Secrets, shared: Shared) {
    let input = Input::Radius;
    let socket = Arc::new(socket);
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut buf = vec![0u8; 4096];
    loop {
        let permit = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            p = in_flight.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let received = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => r,
        };
        let (n, peer): (usize, SocketAddr) = match received {
            Ok(x) => x,
            Err(error) => {
                tracing::warn!(error = %error, "RADIUS receive failed");
                continue;
            }
        };
        let ip = peer.ip();
        let Some(school) = shared.sources.admit(input, ip) else {
            continue;
        };
        let Some(secret) = secrets.lookup(ip) else {
            shared.sources.refuse(input, ip);
            tracing::warn!(peer = %ip, "RADIUS request from a client with no shared secret configured (collector.radius_clients or radius_secret)");
            continue;
        };
        shared.sources.add(input, Some(ip), Count::Received, 1);
        shared.sources.add(input, Some(ip), Count::Bytes, n as u64);
        let receipt = shared.receipt(input, ip, school);
        match radius::decode(&buf[..n], secret.as_bytes(), &receipt) {
            Outcome::Accepted {
                record, response, ..
            } => {
                shared.sources.add(input, Some(ip), Count::Records, 1);
                let writer = shared.writer.clone();
                let socket = socket.clone();
                shared.tracker.spawn(async move {
                    if writer.append(vec![record]).await {
                        let _ = socket.send_to(&response, peer).await;
                    }
                    drop(permit);
                });
            }
            Outcome::BadAuthenticator { record } | Outcome::Malformed { record, .. } => {
                shared.sources.add(input, Some(ip), Count::Malformed, 1);
                shared.sources.add(input, Some(ip), Count::Records, 1);
                // Kept raw; not answered. Waits for room like any record that is kept.
                if shared.writer.send(vec![record]).await.is_err() {
                    break;
                }
            }
        }
    }
}
